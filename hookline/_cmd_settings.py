"""``hookline settings``: every setting, its current value and its meaning."""

from __future__ import annotations

import argparse
import dataclasses

from hookline.settings import Settings, _render


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p


def run(args: argparse.Namespace, settings: Settings) -> int:
    del args
    for (var, default, doc), f in zip(Settings.describe(), dataclasses.fields(Settings), strict=True):
        current = _render(getattr(settings, f.name))
        print(f"{var:34} = {current:24} (default {default}) — {doc}")
    return 0
