"""Image and seed files: metadata round-trips, names never collide, bad files fail clearly."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from rarecli.errors import InputError
from rarecli.io.atomic import write_new
from rarecli.io.images import (
    a1111_parameters,
    open_image,
    read_image_folder,
    read_metadata,
    read_rgb,
    save_numbered_png,
)
from rarecli.io.naming import next_index, output_name, slugify
from rarecli.seeds.files import load_seed, save_seed


def _img(color=(10, 200, 30), size=(16, 16), mode="RGB"):
    return Image.new(mode, size, color)


def test_png_metadata_round_trips(tmp_path):
    params = a1111_parameters("a hairy frog", {"Steps": 20, "Sampler": "DDIM", "CFG scale": 7.5, "Seed": 3})
    meta = {"command": "seedselect", "model": "tiny-sd", "seed": 3, "hyper": {"lr": 0.1}}
    path = save_numbered_png(
        tmp_path, _img(), seed=3, method="sd", prompt="A hairy frog!", parameters=params, rare=meta
    )
    assert path.name == "00000_3_sd_a-hairy-frog.png"
    got = read_metadata(path)
    assert got["parameters"] == "a hairy frog\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 3"
    assert got["rare"]["hyper"] == {"lr": 0.1}
    assert got["rare"]["model"] == "tiny-sd"
    assert "version" in got["rare"]


def test_names_are_never_reused(tmp_path):
    kw = dict(seed=1, method="sd", prompt="frog", parameters="p", rare={})
    paths = [save_numbered_png(tmp_path, _img(), **kw) for _ in range(3)]
    assert [p.name[:5] for p in paths] == ["00000", "00001", "00002"]
    # An existing file with the next index (e.g. written by another process) is skipped, not overwritten.
    squatter = tmp_path / output_name(3, 1, "sd", "frog")
    squatter.write_bytes(b"mine")
    (tmp_path / "00002_1_sd_frog.png").unlink()  # a gap does not cause reuse of an older index either
    nxt = save_numbered_png(tmp_path, _img(), **kw)
    assert nxt.name.startswith("00004_")
    assert squatter.read_bytes() == b"mine"


def test_write_new_refuses_existing_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    write_new(target, lambda fh: fh.write(b"1"))
    with pytest.raises(FileExistsError):
        write_new(target, lambda fh: fh.write(b"2"))
    assert target.read_bytes() == b"1"

    def boom(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_new(tmp_path / "b.bin", boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_slugify():
    assert slugify("  Tiger CAT / ünïcode!! ") == "tiger-cat-unicode"
    assert slugify("???") == "untitled"
    assert len(slugify("x" * 500)) <= 48
    assert next_index(__import__("pathlib").Path("/nonexistent")) == 0


def test_bad_images_give_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    good = tmp_path / "good.png"
    _img().save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(InputError, match="not an image"):
        open_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="truncated"):
        open_image(truncated)
    with pytest.raises(InputError, match="not a file"):
        open_image(tmp_path / "missing.png")
    images, skipped = read_image_folder(tmp_path)
    assert [p.name for p, _ in images] == ["good.png"]
    assert sorted(p.name for p, _ in skipped) == ["cut.png", "notes.txt"]


def test_odd_modes_become_rgb(tmp_path):
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(rgba)  # fully transparent red -> white
    assert read_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    grey16 = tmp_path / "g.png"
    Image.new("I;16", (4, 4), 65535).save(grey16)
    assert read_rgb(grey16).getpixel((0, 0)) == (255, 255, 255)
    pal = tmp_path / "p.gif"
    _img().convert("P").save(pal)
    assert read_rgb(pal).mode == "RGB"


def test_seed_files_round_trip_with_metadata(tmp_path):
    t = torch.randn(4, 8, 8)
    path = save_seed(tmp_path / "s.safetensors", t, {"seed": 5, "model": "tiny-sd", "hyper": {"lr": 0.1}})
    loaded = load_seed(path)
    assert torch.equal(loaded.tensor, t)
    assert loaded.metadata["seed"] == 5
    assert loaded.metadata["hyper"] == {"lr": 0.1}
    assert loaded.metadata["shape"] == [4, 8, 8]
    with pytest.raises(FileExistsError):
        save_seed(path, t)


def test_pickled_and_foreign_seed_files_are_rejected(tmp_path):
    pt = tmp_path / "seed.pt"
    torch.save(torch.randn(4, 8, 8), pt)
    with pytest.raises(InputError, match="never loads pickles"):
        load_seed(pt)
    raw = tmp_path / "seed.pkl"
    raw.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputError, match="pickle"):
        load_seed(raw)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="not a seed file"):
        load_seed(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="no `seed` tensor"):
        load_seed(other)
    with pytest.raises(InputError, match="NaN"):
        save_seed(tmp_path / "nan.safetensors", torch.tensor([float("nan")]))


def test_side_by_side_puts_one_folder_per_row_enlarged_and_captioned(tmp_path, capsys):
    from rarecli.toyworld.__main__ import main
    from rarecli.toyworld.side_by_side import MIN_SIDE, enlarge, side_by_side

    colours = {"plain": [(255, 0, 0), (0, 255, 0), (0, 0, 255)], "tuned": [(9, 9, 9)]}
    for name, values in colours.items():
        (tmp_path / name).mkdir()
        for i, rgb in enumerate(values):
            Image.new("RGB", (8, 8), rgb).save(tmp_path / name / f"{i:05d}.png")
    big = enlarge(Image.new("RGB", (8, 4)))
    assert big.size == (8 * MIN_SIDE // 4, MIN_SIDE)  # integer factor from the short side
    seen = []
    picture = side_by_side(
        [tmp_path / "plain", tmp_path / "tuned"], max_per_row=2, caption=lambda n, im: seen.append(n) or n
    )
    assert seen == ["plain", "plain", "tuned"]
    # Two columns (max_per_row), two rows; each tile MIN_SIDE wide plus the grid's padding.
    assert picture.width == 2 * MIN_SIDE + 3 * 4 and picture.height > 2 * MIN_SIDE
    pixel = picture.getpixel((4 + MIN_SIDE // 2, 4 + MIN_SIDE // 2))
    assert pixel == (255, 0, 0)  # the first image, upper-left, enlarged with nearest-neighbour

    out = tmp_path / "cmp.png"
    assert main(["side-by-side", str(out), str(tmp_path / "plain"), str(tmp_path / "tuned")]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert main(["side-by-side", str(out), str(tmp_path / "plain")]) == 1  # never overwritten
    (tmp_path / "empty").mkdir()
    assert main(["side-by-side", str(tmp_path / "other.png"), str(tmp_path / "empty")]) == 1
    assert "no PNG in" in capsys.readouterr().err and not (tmp_path / "other.png").exists()
