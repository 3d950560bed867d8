"""`netcli` and `python -m netcli`: the CLI, where a Ctrl-C even while its modules import ends in one line, exit 130."""
import sys


def main() -> None:
    try:
        from .cli import main as run  # numpy, pydantic, rich and typer: a third of a second or more

        run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
