"""Named handler outputs: a tab's handlers return small NamedTuples whose field names are the names
of the tab's components, so a value can never land in the wrong component by position. A tab's
dataclass inherits `TabViews` to turn such a view into Gradio's `{component: value}` and to list the
components an event writes."""

from __future__ import annotations

from typing import NamedTuple


class TabViews:
    def outputs(self, view: type[NamedTuple]) -> list:
        """The components a view of this type goes to, which its fields name."""
        return [getattr(self, name) for name in view._fields]

    def updates(self, view: NamedTuple) -> dict:
        """`view` as {component: value}."""
        return {getattr(self, name): value for name, value in view._asdict().items()}
