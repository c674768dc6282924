"""Copy the tables of the last benchmark run into README.md.

bench/run.py writes bench/results.md; this puts its tables into README.md's
Performance section, between the two BENCH-RESULTS marker comments, so that
the README's numbers always come from a run and are never typed by hand.

    python3 bench/readme.py            # update README.md
    python3 bench/readme.py --check    # exit 1 if README.md is not up to date
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "README.md")
RESULTS = os.path.join(HERE, "results.md")
BEGIN = "<!-- BENCH-RESULTS: written by bench/readme.py from bench/results.md -->"
END = "<!-- /BENCH-RESULTS -->"


def results_block():
    """results.md without its title, its headings one level down for the README."""
    with open(RESULTS, encoding="utf-8") as file:
        lines = file.read().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    lines = ["#" + line if line.startswith("## ") else line for line in lines]
    return "\n".join([BEGIN] + lines + [END])


def main(argv):
    with open(README, encoding="utf-8") as file:
        readme = file.read()
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        print("README.md has no %s ... %s block" % (BEGIN, END), file=sys.stderr)
        return 1
    updated = readme[:start] + results_block() + readme[end + len(END):]
    if "--check" in argv:
        if updated != readme:
            print("README.md's benchmark tables differ from bench/results.md: "
                  "run python3 bench/readme.py", file=sys.stderr)
            return 1
        return 0
    with open(README, "w", encoding="utf-8") as file:
        file.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
