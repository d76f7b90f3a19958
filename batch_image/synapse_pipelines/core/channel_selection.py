"""Which two channels of an experiment (or of local files) a request correlates.

The one definition of channel matching, shared by the ValidateRequest step (BOSS
experiments) and ``detect`` (local files): explicit names win; otherwise the one channel
whose name contains "synapsin" (presynaptic) and the one containing "psd" (postsynaptic),
case-insensitive, as the original did. Every failure is a :class:`ChannelSelectionError`
naming the field and listing the channels there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from synapse_pipelines.core.errors import ChannelSelectionError

__all__ = [
    "POSTSYNAPTIC_MATCH",
    "PRESYNAPTIC_MATCH",
    "ChannelChoice",
    "ChannelSelection",
    "select_channels",
]

#: Substrings that pick the default channels, case-insensitive, as the original did.
PRESYNAPTIC_MATCH = "synapsin"
POSTSYNAPTIC_MATCH = "psd"


class ChannelChoice(Protocol):
    """What :func:`select_channels` reads of a request: the explicit names, if any
    (a :class:`~synapse_pipelines.core.request.SynapseRequest` is one)."""

    @property
    def presynaptic_channel(self) -> str | None: ...

    @property
    def postsynaptic_channel(self) -> str | None: ...


@dataclass(frozen=True)
class ChannelSelection:
    """The two channels the detector pairs: presynaptic and postsynaptic names."""

    presynaptic: str
    postsynaptic: str


def _match(
    available: Sequence[str], explicit: str | None, substring: str, field: str, source: str
) -> str:
    listing = ", ".join(available) if available else "(none)"
    if explicit is not None:
        if explicit in available:
            return explicit
        near = [name for name in available if name.lower() == explicit.lower()]
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ChannelSelectionError(
            f"channel {explicit!r} is not in {source}; its channels are: {listing}",
            field=field,
            hint=f"{hint}set {field} to one of those names",
        )
    candidates = [name for name in available if substring in name.lower()]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ChannelSelectionError(
            f"no channel name contains {substring!r}; {source}'s channels are: {listing}",
            field=field,
            hint=f"set {field} to the channel to use",
        )
    raise ChannelSelectionError(
        f"several channels contain {substring!r}: {', '.join(candidates)}; "
        f"{source}'s channels are: {listing}",
        field=field,
        hint=f"set {field} to the one to use",
    )


def select_channels(
    available: Sequence[str], request: ChannelChoice, *, source: str = "the experiment"
) -> ChannelSelection:
    """Pick the presynaptic and postsynaptic channels among ``available``.

    Explicit names in the request win; otherwise the one channel whose name contains
    "synapsin" (presynaptic) and the one containing "psd" (postsynaptic), case-insensitive,
    as the original did. Missing or ambiguous matches raise :class:`ChannelSelectionError`
    listing the channels of ``source`` (what the messages call them: "the experiment", or
    "the input" for local files).
    """
    names = list(available)
    pre = _match(
        names, request.presynaptic_channel, PRESYNAPTIC_MATCH, "presynaptic_channel", source
    )
    post = _match(
        names, request.postsynaptic_channel, POSTSYNAPTIC_MATCH, "postsynaptic_channel", source
    )
    if pre == post:
        named = request.presynaptic_channel or request.postsynaptic_channel
        raise ChannelSelectionError(
            f"the channel {pre!r} is both the presynaptic and the postsynaptic channel",
            field="postsynaptic_channel" if request.postsynaptic_channel else "presynaptic_channel",
            hint="name two different channels in presynaptic_channel and postsynaptic_channel"
            if named
            else "set presynaptic_channel and postsynaptic_channel explicitly",
        )
    return ChannelSelection(presynaptic=pre, postsynaptic=post)
