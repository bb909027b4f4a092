"""Asking the caller a question on the keypad: the prompt, barge-in, type-ahead, and the answer's timers.

:class:`KeyInput` serves every node that takes keys (menus, digit collection, the language menu, callback
and survey steps). The caller's time to answer starts when the question has been played, not when it
starts (a caller cannot answer what was not yet asked); a key pressed while the question plays cuts it
short (the media worker stops a ``barge_in`` playback itself) and counts. Keys typed ahead during an earlier
barge-in prompt are taken first, one at a time, so "1 2 #" typed early answers a menu and then a collection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class KeyHost(Protocol):
    """What a question needs from its session."""

    def pop_type_ahead(self) -> str | None: ...
    def play_files(self, files: tuple[str, ...], *, barge_in: bool, loop: bool = False) -> bool: ...
    def forget_play(self) -> None: ...


@dataclass(frozen=True, slots=True)
class KeyRule:
    """How one question is answered: up to ``max_digits`` keys, ended early by ``terminator`` (not kept);
    ``first_timeout`` for the first key once the prompt has played, ``inter_timeout`` after each key."""

    first_timeout: float
    max_digits: int = 1
    terminator: str | None = None
    inter_timeout: float = 0.0


class KeyInput:
    """Plays a question (interruptible) and collects its answer per ``rule``; reports ``on_done(keys,
    now)`` once: the keys (possibly fewer than wanted, or none on a timeout). The owner judges them."""

    def __init__(self, host: KeyHost, rule: KeyRule, on_done: Callable[[str, float], None]) -> None:
        self._host = host
        self._rule = rule
        self._on_done = on_done
        self._keys = ""
        self._active = False
        self._playing = False
        self._asked = 0  # which ask() is current: an answer may start the next ask while an old one unwinds
        self.deadline: float | None = None

    def ask(self, files: tuple[str, ...], now: float) -> None:
        """Ask again: consume type-ahead first; play ``files`` only if it does not answer already."""
        self._asked += 1
        asked = self._asked
        self._keys = ""
        self._active = True
        self._playing = False
        self.deadline = None
        while self._asked == asked and self._active and (key := self._host.pop_type_ahead()) is not None:
            self._feed(key, now)
        if self._asked != asked or not self._active:
            return
        if self._keys:
            self.deadline = now + self._rule.inter_timeout
            return
        self._playing = self._host.play_files(files, barge_in=True)
        if not self._playing:
            self.deadline = now + self._rule.first_timeout

    def key(self, digit: str, now: float) -> bool:
        """Take ``digit``; False when no question is open (the owner decides what the key means)."""
        if not self._active:
            return False
        if self._playing:
            # The worker stopped the prompt on the key (barge-in); its late play_done means nothing now.
            self._playing = False
            self._host.forget_play()
        self._feed(digit, now)
        return True

    def play_done(self, now: float) -> bool:
        """The question has been played: the caller's time starts. False if it was not ours to wait for."""
        if not (self._active and self._playing):
            return False
        self._playing = False
        self.deadline = now + self._rule.first_timeout
        return True

    def timer(self, now: float) -> None:
        if self._active and self.deadline is not None and now >= self.deadline:
            self._finish(now)

    def _feed(self, digit: str, now: float) -> None:
        if self._rule.terminator is not None and digit == self._rule.terminator:
            self._finish(now)
            return
        self._keys += digit
        if len(self._keys) >= self._rule.max_digits:
            self._finish(now)
            return
        self.deadline = now + self._rule.inter_timeout

    def _finish(self, now: float) -> None:
        self._active = False
        self.deadline = None
        self._on_done(self._keys, now)
