"""Move a file larger than one transfer allows (e.g. the 241 MB Gemma 3 270M GGUF to a GPU
machine that accepts 64 MiB per call) as numbered pieces with a checksum manifest.

    python tools/carry_pieces.py split model.gguf --out .gemma --max-mib 60
        -> .gemma/p0/piece, .gemma/p1/piece, ... and .gemma/p0/manifest.json
    python tools/carry_pieces.py split smollm2.gguf --out .smol --max-mib 55 40   # 55 MiB, then 40s
    (send one pNN folder per call, unpacking each into the same folder there)
    python tools/carry_pieces.py join /tmp/pieces --out /tmp/model.gguf

`join` takes the pieces in manifest order and refuses a result whose sha256 differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli  # noqa: E402
from sfteval.records import sha256_file  # noqa: E402

MANIFEST = "manifest.json"


def split(source: Path, out: Path, max_mib: list[int]) -> list[Path]:
    """Pieces of max_mib[0], max_mib[1], ... MiB, the last size repeating until the file ends."""
    size = source.stat().st_size
    sizes, left = [], size
    while left > 0:
        sizes.append(min(left, max_mib[min(len(sizes), len(max_mib) - 1)] * 1024 * 1024))
        left -= sizes[-1]
    names = [f"{source.name}.{i:03d}" for i in range(len(sizes))]
    folders = []
    with open(source, "rb") as handle:
        for index, (name, piece_bytes) in enumerate(zip(names, sizes)):
            folder = out / f"p{index}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(handle.read(piece_bytes))
            folders.append(folder)
    manifest = {"file": source.name, "size": size, "sha256": sha256_file(source), "pieces": names}
    (folders[0] / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return folders


def join(folder: Path, out: Path) -> Path:
    manifests = list(folder.rglob(MANIFEST))
    if not manifests:
        raise cli.UserError(f"no {MANIFEST} under {folder}; copy the p0 folder there too")
    manifest = json.loads(manifests[0].read_text())
    found = {p.name: p for p in folder.rglob(f"{manifest['file']}.*")}
    missing = [name for name in manifest["pieces"] if name not in found]
    if missing:
        raise cli.UserError(f"pieces missing under {folder}: {', '.join(missing)}")
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as target:
        for name in manifest["pieces"]:
            with open(found[name], "rb") as piece:
                shutil.copyfileobj(piece, target, 1 << 20)
    digest = sha256_file(tmp)
    if digest != manifest["sha256"]:
        tmp.unlink()
        raise cli.UserError(f"joined file has sha256 {digest}, expected {manifest['sha256']}")
    tmp.replace(out)
    return out


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="cut FILE into pieces of at most --max-mib")
    s.add_argument("file", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--max-mib",
        type=cli.positive_int,
        nargs="+",
        default=[60],
        help="piece sizes in MiB, in order; the last repeats (e.g. 55 40 to fit what each call has room for)",
    )
    j = sub.add_parser("join", help="rebuild the file from the pieces under FOLDER and check its sha256")
    j.add_argument("folder", type=Path)
    j.add_argument("--out", type=Path, required=True)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "split":
        if not args.file.is_file():
            raise cli.UserError(f"{args.file} does not exist")
        for folder in split(args.file, args.out, args.max_mib):
            print(folder)
    else:
        print(join(args.folder, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
