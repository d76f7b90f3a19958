"""Reading and writing volumes and results: BOSS through intern, local files, the results folder."""
