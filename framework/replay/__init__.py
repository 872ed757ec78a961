"""Replay buffers for world models: whole episodes, sampled as fixed-length windows."""

from framework.replay.sequence import Episode, EpisodeSink, MixedReplay, SequenceReplay

__all__ = ["Episode", "EpisodeSink", "MixedReplay", "SequenceReplay"]
