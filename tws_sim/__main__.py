"""`python -m tws_sim [options]`: the same as `epm sim [options]`."""

from __future__ import annotations

import sys


def main() -> None:
    from epm.cli import app
    from epm.commands import sim  # noqa: F401  (registers the command)

    app(args=["sim", *sys.argv[1:]], prog_name="python -m tws_sim")


if __name__ == "__main__":
    main()
