"""Labels, taxonomy and geofence files of the default pack, from data typed in this folder.

Pure standard library so it also runs (and is tested) in the project venv. Only
`imagenet_classes()` needs the build venv: it reads the ImageNet-1k WordNet ids and lemmas
that the timm package ships as data files.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ANIMALS_TSV = HERE / "imagenet_animals.tsv"
CONTINENTS_JSON = HERE / "continents.json"
RANGES_JSON = HERE / "ranges.json"

ANIMAL_INDICES = range(0, 398)
# Extinct taxa: ImageNet photos of them are models, toys and fossils, never live animals.
EXTINCT = {51: "triceratops", 69: "trilobite"}
DOG_BREEDS = range(151, 269)
CAT_BREEDS = range(281, 286)
HUMANS = {981, 982, 983}  # ballplayer, groom, scuba diver
VEHICLES = {
    403, 404, 405, 407, 408, 436, 444, 450, 466, 468, 472, 484, 510, 511, 537, 547, 554, 555,
    561, 565, 569, 573, 575, 576, 586, 595, 603, 609, 612, 625, 627, 628, 654, 656, 661, 665,
    670, 671, 675, 690, 705, 717, 724, 734, 751, 757, 779, 780, 802, 803, 812, 814, 817, 820,
    829, 833, 847, 856, 864, 866, 867, 870, 871, 874, 880, 895, 914,
}  # fmt: skip
# The first WordNet lemma is the label, except where two classes would share a name.
NAME_OVERRIDES = {
    134: "crane (bird)",
    517: "crane (machine)",
    639: "tank suit",
    264: "Cardigan Welsh corgi",
    # Names that would read as an animal or a person in a camera-trap report.
    408: "amphibious vehicle",
    673: "computer mouse",
    724: "pirate ship",
}
DOG = ("species", "Canis familiaris", "mammalia;carnivora;canidae;canis;familiaris")
CAT = ("species", "Felis catus", "mammalia;carnivora;felidae;felis;catus")
HUMAN = ("species", "Homo sapiens", "mammalia;primates;hominidae;homo;sapiens")
LABELS_FORMAT = "imagenet_wnid_tab_name"


@dataclass(frozen=True)
class ImagenetClass:
    index: int
    wnid: str
    name: str


@dataclass(frozen=True)
class Written:
    names: list[str]
    kind_counts: dict[str, int]
    geofence_rules: int


def imagenet_classes() -> list[ImagenetClass]:
    """The 1000 classes in the model's output order (sorted WordNet ids)."""
    # Read through the distribution's file list: importing timm would need torchvision.
    dist = metadata.distribution("timm")
    # locate_file is typed as a SimplePath; an installed distribution's is a real path.
    info = Path(str(dist.locate_file("timm/data/_info")))
    wnids = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1)
        for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
    )
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    return [
        ImagenetClass(i, w, NAME_OVERRIDES.get(i, lemmas[w].split(",")[0].strip()))
        for i, w in enumerate(wnids)
    ]


def read_labels(path: Path) -> list[ImagenetClass]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return [ImagenetClass(i, wnid, name) for i, (wnid, name) in enumerate(rows)]


def animal_rows() -> dict[int, tuple[str, str, str, str]]:
    """index -> (rank, scientific name, taxonomy, common name or '')."""
    out = {}
    with ANIMALS_TSV.open(encoding="utf-8") as f:
        for row in csv.reader((ln for ln in f if not ln.startswith("#")), delimiter="\t"):
            index, rank, sci, tax, *common = row
            out[int(index)] = (rank, sci, tax, common[0] if common else "")
    return out


def taxonomy_entries(classes: list[ImagenetClass]) -> list[dict]:
    animals = animal_rows()
    entries = []
    for c in classes:
        kind, rank, sci, tax, common = "object", "", "", "", c.name
        if c.index in HUMANS:
            kind, (rank, sci, tax) = "human", HUMAN
        elif c.index in VEHICLES:
            kind = "vehicle"
        elif c.index in DOG_BREEDS:
            kind, (rank, sci, tax) = "animal", DOG
        elif c.index in CAT_BREEDS:
            kind, (rank, sci, tax) = "animal", CAT
        elif c.index in ANIMAL_INDICES and c.index not in EXTINCT:
            kind = "animal"
            rank, sci, tax, common_override = animals[c.index]
            common = common_override or c.name
        if tax and len(tax.split(";")) != 5:
            raise ValueError(f"class {c.index}: taxonomy {tax!r} needs 5 fields")
        entries.append(
            {
                "index": c.index,
                "wnid": c.wnid,
                "label": c.name,
                "kind": kind,
                "taxonomy": tax,
                "scientific_name": sci,
                "common_name": common,
                "rank": rank,
            }
        )
    missing = set(ANIMAL_INDICES) - set(animals) - set(EXTINCT)
    missing -= set(DOG_BREEDS) | set(CAT_BREEDS)
    if missing:
        raise ValueError(f"animal classes without a taxonomy row: {sorted(missing)}")
    return entries


def expand_tokens(tokens: list[str], continents: dict) -> dict[str, list[str]]:
    """Turn ranges.json tokens into SpeciesNet's {"ISO3": [admin1, ...]} allow map."""
    groups = continents["continents"] | continents["subregions"]
    known = {code for codes in continents["continents"].values() for code in codes}
    allow: dict[str, list[str]] = {}
    for token in tokens:
        remove = token.startswith("-")
        name = token.lstrip("-")
        country, _, states = name.partition(":")
        codes = groups.get(country, [country])
        for code in codes:
            if code not in known:
                raise ValueError(f"unknown ISO 3166-1 alpha-3 code {code!r} in {token!r}")
            if remove:
                allow.pop(code, None)
            else:
                allow[code] = sorted(states.split(",")) if states else []
    if any(v and k != "USA" for k, v in allow.items()):
        raise ValueError("admin1 codes are only used for USA")
    return dict(sorted(allow.items()))


def geofence(entries: list[dict]) -> dict[str, dict]:
    continents = json.loads(CONTINENTS_JSON.read_text(encoding="utf-8"))
    ranges = json.loads(RANGES_JSON.read_text(encoding="utf-8"))["allow"]
    known_taxa = {e["taxonomy"] for e in entries if e["kind"] == "animal"}
    out = {}
    for key, tokens in sorted(ranges.items()):
        if key not in known_taxa:
            raise ValueError(f"geofence key {key!r} is not an animal taxonomy in the pack")
        out[key] = {"allow": expand_tokens(tokens, continents)}
    return out


def write_metadata(pack: Path, classes: list[ImagenetClass] | None = None) -> Written:
    classes = classes if classes is not None else imagenet_classes()
    names = [c.name for c in classes]
    if len({n.lower() for n in names}) != len(names):
        raise ValueError("label names must be unique, ignoring case")
    labels = "".join(f"{c.wnid}\t{c.name}\n" for c in classes)
    (pack / "labels.txt").write_text(labels, encoding="utf-8")
    entries = taxonomy_entries(classes)
    fence = geofence(entries)
    dump = json.dumps(entries, indent=1, ensure_ascii=False) + "\n"
    (pack / "taxonomy.json").write_text(dump, encoding="utf-8")
    dump = json.dumps(fence, indent=1, sort_keys=True) + "\n"
    (pack / "geofence.json").write_text(dump, encoding="utf-8")
    kinds = Counter(e["kind"] for e in entries)
    return Written(names, dict(sorted(kinds.items())), len(fence))
