#!/usr/bin/env python
"""Check the built embedded corpus against its pins in pins/corpus.json, or record them for a new corpus version.

    python tools/pin_corpus.py            # build the corpus if needed; compare with the pins of its version
    python tools/pin_corpus.py --record   # record the pins of a corpus version that has none yet

Pins of a version are never overwritten (a version's contents do not change: bump dmsae.data.CORPUS_VERSION instead),
unless --force is given."""
import argparse, sys
from pins import corpus_record, load_pins, save_pins, PINS

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true", help="record the pins of the built corpus version")
    ap.add_argument("--force", action="store_true", help="with --record: overwrite existing pins of this version")
    a = ap.parse_args()
    from dmsae.data import build_embedded_corpus, corpus_differences, CORPUS_VERSION
    man = build_embedded_corpus()
    pins = load_pins()
    pinned = pins["corpus"].get(CORPUS_VERSION)
    if a.record:
        if pinned and not a.force:
            sys.exit(f"{CORPUS_VERSION} is pinned already in {PINS}; bump CORPUS_VERSION, or pass --force")
        pins["corpus"][CORPUS_VERSION] = dict(note=(pinned or {}).get("note", ""), **corpus_record(man))
        save_pins(pins)
        print(f"recorded the pins of {CORPUS_VERSION} in {PINS}")
        return
    if not pinned: sys.exit(f"{CORPUS_VERSION} has no pins in {PINS}: record them with --record")
    diffs = corpus_differences(man["sources"], pinned["sources"])
    if pinned.get("sha256") and man.get("sha256") != pinned["sha256"] and not diffs:
        diffs = [f"corpus sha256 expected {pinned['sha256']}, found {man.get('sha256')}"]
    if diffs: sys.exit(f"the built corpus {CORPUS_VERSION} differs from its pins:\n  " + "\n  ".join(diffs))
    print(f"the built corpus {CORPUS_VERSION} matches its pins (corpus sha256 {man['sha256']})")

if __name__ == "__main__": main()
