"""Interactive questions on a terminal: a default in brackets, ``?`` for help, re-ask on error."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from provisioning.questions import QUESTIONS, Answers, Question, check_pins, help_for


class Aborted(Exception):
    """The technician ended input (Ctrl-D)."""


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class Prompter:
    def __init__(self, read: Callable[[str], str] | None = None, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._read = read or self._input

    def _input(self, text: str) -> str:
        self.out.write(text)
        self.out.flush()
        line = sys.stdin.readline()
        if not line:
            raise Aborted("input ended")
        return line.rstrip("\r\n")

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def ask(self, q: Question, answers: Answers) -> Any:
        previous = answers.get("_previous", {})
        while True:
            default = previous.get(q.key, q.default(answers))
            if default is None and q.optional:
                hint = " [blank: none]"
            elif default is not None:
                hint = f" [{_shown(default)}]"
            else:
                hint = ""
            raw = self._read(f"{q.prompt}{hint} (? for help): ").strip()
            if raw == "?":
                self.say(f"  {help_for(q, answers)}")
                continue
            if raw == "":
                if default is not None:
                    raw = default
                elif q.optional:
                    return None
                else:
                    self.say("  an answer is needed (? for help)")
                    continue
            try:
                return q.parse(raw, answers)
            except ValueError as exc:
                self.say(f"  not accepted: {exc}")

    def confirm(self, text: str, default: bool = False) -> bool:
        while True:
            raw = self._read(f"{text} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
            if not raw:
                return default
            if raw in ("y", "yes"):
                return True
            if raw in ("n", "no"):
                return False
            self.say("  answer yes or no")

    def fill(self, given: Answers, context: Answers) -> Answers:
        """Ask every question the answers file or flags left open, in order."""
        answers = {**context, **given}
        for q in QUESTIONS:
            if q.key in answers or not q.when(answers):
                continue
            if not q.ask:
                answers[q.key] = None
                continue
            answers[q.key] = self.ask(q, answers)
            if q.key == "ir.pin":
                check_pins(answers)
        return answers
