"""Character picker: a dropdown of the characters, a note on which can speak now (and why the others cannot), and
the switch itself (the session's character, the avatar's GLB)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from components.avatar import character_frame
from core.characters import CharacterBook

UNAVAILABLE_MARK = " (unavailable)"


class CharacterPicker:
    """The picker's logic, separate from the layout.

    Responsibilities: list the characters (those that cannot speak now are marked and explained in the note); on a
    pick, check the character again (a voice may have come or gone) and either switch to it (session state plus a
    frame that loads its GLB) or warn why not and keep the current character.
    """

    def __init__(self, book: CharacterBook) -> None:
        self.book = book

    def choices(self) -> list[tuple[str, str]]:
        """(label, name) pairs for the dropdown."""
        return [(name + ("" if self.book.check(name).available else UNAVAILABLE_MARK), name)
                for name in self.book.names]

    def note(self, current: str) -> str:
        """Markdown: who speaks now, with which voice, and why any other character is not offered."""
        check = self.book.check(current)
        lines = [f"Speaking: **{check.character.name}**, {check.character.description} ({check.voice})."]
        lines += [c.why_not() for c in map(self.book.check, self.book.names) if not c.available]
        return "\n\n".join(lines)

    def pick(self, name: str, current: str) -> tuple[str, Any, Any, str]:
        """A pick in the dropdown: (session character, avatar frame, dropdown value, note)."""
        check = self.book.check(name)
        if not check.available:
            gr.Warning(f"{check.why_not()} Keeping {self.book.get(current).name}.")
            return current, gr.skip(), gr.update(value=self.book.get(current).name), self.note(current)
        character = check.character
        return character.name, character_frame(character.name, character.glb), gr.skip(), self.note(character.name)
