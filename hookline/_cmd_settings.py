"""``hookline settings``: every setting, its current value and its meaning."""

from __future__ import annotations

import argparse
import dataclasses

from hookline.settings import Settings, _render


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--markdown", action="store_true", help="print the reference table of the README")


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var, default, doc in Settings.describe():
        shown = f"`{default}`" if default else "(empty)"
        rows.append(f"| `{var}` | {shown} | {doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    for (var, default, doc), f in zip(Settings.describe(), dataclasses.fields(Settings), strict=True):
        current = _render(getattr(settings, f.name))
        print(f"{var:34} = {current:24} (default {default}) — {doc}")
    return 0
