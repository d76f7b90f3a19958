"""Developer tooling of the CDK app, apart from the constructs.

- ``wheelhouse``: fills and checks the Lambda layer's local wheelhouse and bundles the layer
  from it offline (``python -m infra.tooling.wheelhouse --fill-wheelhouse``, run by
  ``./install.sh``).
- ``image_pins``: regenerates ``batch_image/constraints.txt`` (``python -m
  infra.tooling.image_pins``).

Constructs may import tooling (the layer's bundler calls :func:`wheelhouse.bundle_layer`);
tooling never imports constructs or the CDK.
"""
