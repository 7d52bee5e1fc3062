"""Reading a YAML file a user wrote: every way it can be unreadable is one error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from generator.errors import GapfillError


def read_yaml(path: Path, error: type[GapfillError]) -> Any:
    """The file's content (``safe_load``), or ``error`` with one line saying why not.

    PyYAML's composer recurses once per nesting level, so a file nested thousands deep would
    end in a RecursionError: that is bad input, said as such.
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise error(f"{path}: is a directory, not a YAML file") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    except RecursionError as exc:
        raise error(f"{path}: nested too deeply") from exc
