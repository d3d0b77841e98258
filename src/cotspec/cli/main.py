"""The `cotspec` command line: one typer app (`cotspec.cli.app`), one module per command, errors as one line.

    cotspec --help
"""

from __future__ import annotations

import os
import sys

# Passive OpenMP waits, set before any command imports torch (which loads its OpenMP runtime): on a CPU
# shared with other busy processes, spinning intra-op threads made a 2-thread decoding step 15x slower
# than one thread (2.4 s vs 0.15 s on the 2-core reference machine); passive waits cost nothing
# measurable when the machine is idle (bench/eval_throughput.py sets the same for all its peers).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import Sequence

from ..errors import CotspecError
from .app import app


def _register_commands() -> None:
    # Each command lives in its own module and registers itself on `app` when imported.
    from . import build_cmd  # noqa: F401
    from . import eval_cmd  # noqa: F401
    from . import sample_cmd  # noqa: F401
    from . import report_cmd  # noqa: F401
    from . import run_cmd  # noqa: F401
    from . import store_cmd  # noqa: F401
    from . import serve_cmd  # noqa: F401
    from . import train_cmd  # noqa: F401


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: runs the app; a CotspecError becomes `error: <one line>` and exit status 2."""
    _register_commands()
    try:
        app(args=list(argv) if argv is not None else None, prog_name="cotspec")
    except CotspecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume where it stopped", file=sys.stderr)
        sys.exit(130)
    except SystemExit as stop:
        # typer turns Ctrl-C inside a command into a silent SystemExit(130): say how to resume.
        if stop.code == 130:
            print("interrupted: re-run the same command to resume where it stopped", file=sys.stderr)
        raise


if __name__ == "__main__":  # python -m cotspec.cli.main (e.g. under accelerate launch)
    main()
