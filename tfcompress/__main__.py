"""``python -m tfcompress COMMAND ...``: the same as the ``tfcompress`` console command."""

from tfcompress import cli

if __name__ == "__main__":
    cli.main()
