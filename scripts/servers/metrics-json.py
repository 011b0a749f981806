#!/usr/bin/env python3
"""Parses Prometheus's text format from standard input with prometheus_client's parser (PyPI) and prints the
samples as JSON: [{"name": …, "type": …, "labels": {…}, "value": …}, …]. A text the parser refuses exits 1."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            samples.append({"name": sample.name, "type": family.type, "labels": sample.labels,
                            "value": sample.value})
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
