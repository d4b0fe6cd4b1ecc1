"""``python -m workers.engine profile ...`` (the CLI) or ``python -m workers.engine child`` (the sandbox)."""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "child":
        from .child import main as child_main

        result = child_main()
        return int(result or 0)
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
