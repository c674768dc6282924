"""Copy the tables of the last benchmark runs into README.md.

bench/run.py writes bench/results.md, and each other benchmark script its own
bench/NAME.md; this puts their tables into README.md, each between a pair of
marker comments naming its file,

    <!-- BENCH-RESULTS: written by bench/readme.py from bench/NAME.md -->
    <!-- /BENCH-RESULTS -->

so that the README's numbers always come from a run and are never typed by hand.

    python3 bench/readme.py            # update README.md
    python3 bench/readme.py --check    # exit 1 if README.md is not up to date
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "README.md")
BEGIN = re.compile(r"<!-- BENCH-RESULTS: written by bench/readme\.py from bench/([\w.-]+\.md) -->")
END = "<!-- /BENCH-RESULTS -->"


def results_block(begin, name):
    """bench/NAME without its title, its headings one level down for the README."""
    with open(os.path.join(HERE, name), encoding="utf-8") as file:
        lines = file.read().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    lines = ["#" + line if line.startswith("## ") else line for line in lines]
    return "\n".join([begin] + lines + [END])


def updated_readme(readme):
    """README.md with every marked block written anew; None if a block is unclosed."""
    parts, position = [], 0
    for match in BEGIN.finditer(readme):
        end = readme.find(END, match.end())
        if match.start() < position or end < 0:
            return None
        parts += [readme[position:match.start()], results_block(match.group(0), match.group(1))]
        position = end + len(END)
    if not parts:
        return None
    return "".join(parts) + readme[position:]


def main(argv):
    with open(README, encoding="utf-8") as file:
        readme = file.read()
    updated = updated_readme(readme)
    if updated is None:
        print("README.md has no complete BENCH-RESULTS ... %s block" % END, file=sys.stderr)
        return 1
    if "--check" in argv:
        if updated != readme:
            print("README.md's benchmark tables differ from the bench/*.md they come "
                  "from: run python3 bench/readme.py", file=sys.stderr)
            return 1
        return 0
    with open(README, "w", encoding="utf-8") as file:
        file.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
