"""Owner of ``prompt`` documents: audio named ``"<language>/<prompt>"`` (or ``"shared/<prompt>"``)
stored in the catalog folder of pushed prompts, where it overrides the packaged prompt of that name.

The audio is checked and converted by :func:`appliance.ivr.prompts.to_prompt_audio` and written by
:func:`~appliance.ivr.prompts.install_prompt` (atomic and durable); the catalog reads the folder on every
lookup, so the new prompt serves the next call. The file is a materialisation of the stored document:
the store writes it again at every start. Removing the document deletes the file and the packaged prompt
(if any) serves again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.durable import fsync_dir
from appliance.ivr.prompts import (
    SUFFIX,
    BadPromptAudio,
    BadPromptName,
    check_language,
    check_name,
    install_prompt,
    to_prompt_audio,
)
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.fields import wrong
from appliance.sync.documents.model import Kind


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    language: str
    name: str
    data: bytes


class PromptOwner:
    """``prompt`` documents into the catalog folder ``directory`` (``<state_dir>/ivr/prompts``)."""

    kind: Kind = "prompt"

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)

    def validate(self, name: str, content: Any, *, version: int) -> PreparedPrompt:
        language, _, prompt = name.partition("/")
        try:
            check_language(language, shared=True)
            check_name(prompt)
        except BadPromptName as exc:
            raise InvalidDocument(f'{exc} (a prompt is named "<language>/<prompt>")') from None
        if not isinstance(content, bytes):
            raise wrong("a byte string (8 kHz A-law, or a WAV file)", content, "")
        try:
            to_prompt_audio(content)
        except BadPromptAudio as exc:
            raise InvalidDocument(str(exc), path="") from None
        return PreparedPrompt(language, prompt, content)

    def apply(self, name: str, prepared: PreparedPrompt) -> None:
        install_prompt(self._directory, prepared.language, prepared.name, prepared.data)

    def remove(self, name: str) -> None:
        language, _, prompt = name.partition("/")
        folder = self._directory / language
        with contextlib.suppress(FileNotFoundError):
            (folder / f"{prompt}{SUFFIX}").unlink()
            fsync_dir(folder)
