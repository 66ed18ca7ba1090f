"""A collection in the folder layout users already have: images/, masks/ and manifest.csv.

example:
  python -m dng_jax.pack --data ../shared/data/dsb2018/stage1_train.zip --output dsb2018_folder
  python -m dng_jax.summary --data dsb2018_folder
  # an experiment of your own from the bundled mini-set: a labeled type and an unlabeled one, side by side
  python -m dng_jax.pack --types fluorescence --no-manifest --output my_study/ct1
  python -m dng_jax.pack --types tissue_purple,tissue_magenta --masks-for 4 --no-manifest --output my_study/new

Writes every image of --data (the Kaggle zip or folder, or a folder layout; default: the bundled mini-set)
as OUTPUT/images/<id>.png (grayscale where the three channels are equal, else RGB), its nuclei as
OUTPUT/masks/<id>.png (16-bit instance labels, 0 = background) and OUTPUT/manifest.csv (id, cell_type),
every PNG compressed at zlib's highest level. Every command that takes data.path reads the result and
gets the same images, labels, cell types and splits as from --data (DSB2018's 664 images: about 45 MB).
--masks-for N keeps the masks of the first N images only (by id; the others are unlabeled, as in an
experiment of which a few images are annotated), --no-masks keeps none. Everything is checked before the
output folder is made: exit status 2 on unreadable data, a bad flag or an output folder that already holds
images (one line naming it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dng_jax import cli
from dng_jax.data.export import pack
from dng_jax.io.workdir import check_output_dir


def main(argv=None) -> int:
    p = cli.make_parser("python -m dng_jax.pack", __doc__)
    cli.add_output_flag(p, "output folder (gets images/, masks/, manifest.csv)")
    p.add_argument("--data", default=None, help="the collection to pack: Kaggle-layout zip or folder, or a folder "
                                                "layout (default: the bundled mini-set)")
    p.add_argument("--types", default=None, help="only the images of these cell types (comma-separated)")
    p.add_argument("--no-masks", action="store_true", help="leave the masks out: an unlabeled experiment")
    p.add_argument("--no-manifest", action="store_true",
                   help="no manifest.csv (a folder of one experiment beside others takes its cell type from its name)")
    p.add_argument("--masks-for", type=int, default=None, metavar="N",
                   help="masks for the first N images only (by id): the others are unlabeled")
    cli.add_verbosity_flags(p, "no summary line")
    args = p.parse_args(argv)
    if args.masks_for is not None and (args.masks_for < 0 or args.no_masks):
        p.error("--masks-for takes a number >= 0, and not with --no-masks")

    def run() -> int:
        check_output_dir(args.output, "--output")  # made when the first image is written
        types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
        n = pack(args.output, args.data, progress=args.progress, cell_types=types, masks=not args.no_masks,
                 manifest=not args.no_manifest, masks_for=args.masks_for)
        if not args.quiet:
            print(f"wrote {n['images']} images ({n['gray']} as grayscale) and {n['masks']} masks to "
                  f"{Path(args.output)}, {n['bytes'] / 1e6:.1f} MB" + ("" if args.no_manifest else ", with manifest.csv"))
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
