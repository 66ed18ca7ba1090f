"""Ground truth (and inputs) of a split as label images, for dng_jax.evaluate and for viewers.

example:
  python -m dng_jax.export_labels --data stage1_train.zip --split test --protocol wide --output test_set
  python -m dng_jax.predict --checkpoint runs/cpu_real/baseline --input test_set/images --output test_set/pred
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/pred

Kaggle ships one mask PNG per nucleus; this writes, for every image of a split, OUTPUT/gt/<id>.png
(16-bit instance labels, 0 = background) and OUTPUT/images/<id>.png (the RGB input), plus
OUTPUT/cell_types.json (id -> type; evaluate reads it to resample within cell types). Splits are the
training driver's (--protocol, default wide as in configs/default.py and cpu_real.py; --known-type,
--n-test-per-type, --test-fraction, --val-fraction, --unknown-val-fraction and --seed as in config.data;
--split val is the wide protocol's validation images, val_known / val_unknown its CT1 / other halves).
--data reads the Kaggle layout (zip or folder) and the folder layout (images/, masks/, manifest.csv);
python -m dng_jax.pack writes a whole collection in the folder layout. Exit status 2 on unreadable data,
a bad flag or an unusable output folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dng_jax import cli
from dng_jax.data.export import SPLITS, export
from dng_jax.io.workdir import check_output_dir


def main(argv=None) -> int:
    p = cli.make_parser("python -m dng_jax.export_labels", __doc__)
    cli.add_output_flag(p, "output folder (gets gt/, images/, cell_types.json)")
    p.add_argument("--split", default="test", choices=SPLITS, help="which images")
    cli.add_data_flags(p)
    p.add_argument("--no-images", action="store_true", help="write only the label images")
    cli.add_verbosity_flags(p, "no summary line")
    args = p.parse_args(argv)

    def run() -> int:
        data = cli.data_config(args)
        check_output_dir(args.output, "--output")  # made when the first file is written, after the data's checks
        ids = export(args.output, data, args.split, images=not args.no_images, progress=args.progress)
        if not args.quiet:
            print(f"wrote {len(ids)} label images to {Path(args.output) / 'gt'}"
                  + ("" if args.no_images else f" and their inputs to {Path(args.output) / 'images'}"))
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
