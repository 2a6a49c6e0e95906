"""Commands of this concern (filled in as they are built)."""

from __future__ import annotations

from pathlib import Path

import click

from mammoseg.cli.backend import BackendCommand
from mammoseg.dataset import layouts
from mammoseg.dataset.synthetic.layouts import SYNTH_LAYOUTS

COMMANDS: list[click.Command] = []


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cases", type=click.IntRange(min=1), default=100, show_default=True,
              help="Full mammograms to generate (each with its abnormalities' crops and masks).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--image-size", type=click.IntRange(min=128), default=1024, show_default=True,
              help="Long side (rows) of the full mammograms; the aspect is about 1.6:1.")
@click.option("--full-size", is_flag=True, help="CBIS-like ~4800 x 3000 files (about 28 MB each); ignores --image-size.")
@click.option("--layout", type=click.Choice(SYNTH_LAYOUTS), default="nbia", show_default=True,
              help="Folder layout of a CBIS-DDSM download to imitate.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel processes.")
@click.option("--normals", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also write this many normal mammograms (no abnormality) to OUT/normals/ in mixed formats.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier synthetic tree in OUT.")
@click.option("--style", type=click.Choice(["film", "digital"]), default="film", show_default=True,
              help="Digitised film (DDSM) or full-field digital mammograms (FFDM).")
def synth_command(out: Path, cases: int, seed: int, image_size: int, full_size: bool, layout: str, workers: int,
                  normals: int, overwrite: bool, style: str) -> None:
    """Write synthetic mammograms in CBIS-DDSM's own on-disk format, for runs without the real data.

    Every full mammogram is a Secondary Capture DICOM (16-bit MONOCHROME2) with one to three masses
    or calcification clusters, each with a cropped image and a binary ROI mask, plus unlabelled
    dense tissue, film labels and scanner bands, as on digitised film. With --style digital they are
    full-field digital mammograms instead (aspect about 1.25:1, 12, 14 or 16 bits stored, often
    MONOCHROME1): a black or a white padded background, burnt-in text and a view marker, a
    compression paddle's edge and detector line artefacts. The four official description CSVs are reproduced byte for byte
    in format, and a few cases carry the real files' defects (crop and mask swapped, a mask a few
    pixels off in size, a MONOCHROME1 image, crop and mask in separate series).

    \b
    Layouts (what OUT holds):
      nbia         the four CSVs and NBIA's metadata.csv beside CBIS-DDSM/<Subject>/
                   <MM-DD-YYYY>-DDSM-NA-<study>/1.000000-<description>-<series>/1-1.dcm
                   (the CSV paths do not resolve literally, as in a current download)
      csv-paths    the four CSVs beside CBIS-DDSM/, under which the CSV paths resolve literally
      kaggle-jpeg  csv/ (the four CSVs and dicom_info.csv) and jpeg/<SeriesInstanceUID>/<k>-<nnn>.jpg
    OUT/synth_truth.json records what was planted where (lesions, dense islands, labels, bands,
    the breast's box, defects);
    it is not part of CBIS-DDSM and readers must not need it.
    --normals N adds OUT/normals/: N mammograms without abnormalities, two per patient, stored
    per patient in turn as DICOM (PatientID), 16-bit PNG (DDSM names), 8-bit PGM (MIAS names)
    and 16-bit TIFF (INbreast names), for `prepare --normals OUT/normals`; with --style digital,
    digital mammograms as DICOM (some MONOCHROME1), PNG and TIFF.

    \b
    Example:
      mammoseg synth data/synth --cases 100 --seed 0
      mammoseg synth data/synth-kaggle --cases 20 --layout kaggle-jpeg
      mammoseg synth data/synth --cases 60 --normals 20
      mammoseg synth data/synth-digital --cases 100 --style digital
    """
    from mammoseg.dataset.synthetic import generate

    summary = generate(out, cases=cases, seed=seed, image_size=image_size, full_size=full_size, layout=layout,
                       workers=workers, overwrite=overwrite, style=style)
    click.echo(f"wrote {summary.cases} mammograms with {summary.abnormalities} abnormalities ({summary.files} files, "
               f"{summary.bytes / 1e6:.1f} MB) to {summary.root} in {summary.seconds:.1f} s")
    if normals:
        from mammoseg.dataset.synthetic.normals import NORMALS_DIR, write_normals

        written = write_normals(out / NORMALS_DIR, count=normals, seed=seed,
                                image_size=4800 if full_size else image_size, style=style)
        click.echo(f"wrote {written.images} normal mammograms of {written.patients} patients to {written.root} ("
                   + ", ".join(f"{fmt} {n}" for fmt, n in written.by_format.items()) + ")")


COMMANDS.append(synth_command)


@click.command("prepare")
@click.argument("data_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="DATASET folder to write.")
@click.option("--layout", type=click.Choice([layouts.AUTO, *layouts.names()]), default=layouts.AUTO, show_default=True,
              help="How the files are laid out below DATA_ROOT (auto: detected).")
@click.option("--image-size", type=int, default=640, show_default=True, help="Side S of the square examples.")
@click.option("--positive-tiles", type=int, default=2, show_default=True, help="Tiles around abnormalities per image.")
@click.option("--negative-tiles", type=int, default=2, show_default=True, help="Tiles of normal tissue (no abnormal pixel) per image.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Share of train patients moved to validation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the validation draw and the tiles.")
@click.option("--images-per-shard", type=int, default=16, show_default=True, help="Mammograms per work unit (one shard each).")
@click.option("--workers", type=int, default=1, show_default=True, help="Parallel processes over source images.")
@click.option("--overwrite", is_flag=True, help="Replace a DATASET prepared with other options.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any case is skipped (the report is still written).")
@click.option("--normals", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of normal mammograms from another collection (DICOM, PNG, JPEG, TIFF, PGM), added as whole images of kind 'normal'.")
@click.option("--folds", type=click.IntRange(min=2), default=None,
              help="Datasets without an official split (mias, images-masks): write K datasets OUT/fold-1..K, fold k the test set of the k-th.")
@click.option("--test-only", is_flag=True,
              help="Every image in the test split: a dataset for external validation (`evaluate RUN --data DATASET`).")
def prepare_command(data_root: Path, out: Path, layout: str, image_size: int, positive_tiles: int, negative_tiles: int,
                    val_fraction: float, seed: int, images_per_shard: int, workers: int, overwrite: bool, strict: bool,
                    normals: Path | None, folds: int | None, test_only: bool) -> None:
    """Turn a mammography dataset into TFRecord shards of whole breasts, abnormality tiles and normal tiles.

    CBIS-DDSM (NBIA, old CSV-path or Kaggle JPEG layout): reads the four official description CSVs
    (found anywhere below DATA_ROOT) and splits by patient (official test stays test; val drawn from
    train). mini-MIAS (mdbNNN.pgm and Info.txt; circles become discs) and images/ + masks/ folders
    (same stems; a non-zero mask pixel is abnormal; optional patients.csv with image,patient) have
    no official split: patients are cut into folds, fold 1 of 5 is test, or with --folds K each
    fold in turn (OUT/fold-k; train on one with --data OUT/fold-k). Writes shards, manifest.csv,
    prepare_report.csv (every skipped case and why) and dataset.json. Re-running resumes: finished
    units are not redone.

    --normals DIR adds the normal mammograms below DIR (CBIS-DDSM has none), preprocessed like the
    full images, as whole images of kind `normal` with an empty mask. They are split by patient
    (DICOM PatientID, else the MIAS, DDSM or INbreast file-name rule, else the file) in the
    proportions of the CBIS-DDSM split; `evaluate` reports false positives on them separately.

    \b
    Example:
      mammoseg prepare ~/data/CBIS-DDSM --out data/prepared --image-size 640 --workers 4
      mammoseg prepare ~/data/CBIS-DDSM --out data/prepared --normals ~/data/all-mias
      mammoseg prepare ~/data/all-mias --out data/mias --image-size 256 --folds 5
      mammoseg prepare ~/data/other-site --out data/other-site --image-size 256 --test-only
    """
    from mammoseg.dataset.prepare import PrepareOptions, prepare

    options = PrepareOptions(image_size=image_size, positive_tiles=positive_tiles, negative_tiles=negative_tiles,
                             val_fraction=val_fraction, seed=seed, layout=layout, images_per_shard=images_per_shard)
    result = prepare(data_root, out, options, workers=workers, overwrite=overwrite, strict=strict, normals=normals,
                     folds=folds, test_only=test_only)
    warnings = f"{result.warnings} warning(s) in prepare_report.csv; " if result.warnings else ""
    click.echo(f"prepared {result.images} images into {result.dataset} ({result.skipped} skipped case(s); "
               f"{warnings}{result.units_reused} unit(s) reused)")
    for split, kinds in result.counts.items():
        click.echo(f"  {split:5s} " + "  ".join(f"{kind} {n}" for kind, n in kinds.items()))


@click.command("inspect", cls=BackendCommand)
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG grid of samples with mask overlays [default: DATASET/inspect.png].")
@click.option("--per-cell", type=int, default=3, show_default=True, help="Samples per split and kind.")
def inspect_command(dataset: Path, out: Path | None, per_cell: int) -> None:
    """Count a prepared DATASET's examples per split and kind, and draw samples with their masks.

    \b
    Example:
      mammoseg inspect data/prepared --out reports/dataset.png
    """
    from mammoseg.dataset.inspect import count_table, draw_samples

    click.echo(count_table(dataset))
    png = draw_samples(dataset, out or dataset / "inspect.png", per_cell=per_cell)
    click.echo(f"samples: {png}")


COMMANDS += [prepare_command, inspect_command]
