"""Geofencing and taxonomy rollup, the SpeciesNet way."""

from __future__ import annotations

import numpy as np

from device.vision.taxa import Geofence, Taxon, TaxonIndex, scientific_name_of, split_taxonomy

LEOPARD = "mammalia;carnivora;felidae;panthera;pardus"
LION = "mammalia;carnivora;felidae;panthera;leo"
JAGUAR = "mammalia;carnivora;felidae;panthera;onca"
OCELOT = "mammalia;carnivora;felidae;leopardus;pardalis"
AFRICAN_ELEPHANT = "mammalia;proboscidea;elephantidae;loxodonta;africana"
ASIAN_ELEPHANT = "mammalia;proboscidea;elephantidae;elephas;maximus"


def _taxa() -> list[Taxon]:
    def animal(label, key, sci, common):
        return Taxon(label, "animal", split_taxonomy(key), sci, common, "species")

    return [
        animal("leopard", LEOPARD, "Panthera pardus", "leopard"),
        animal("lion", LION, "Panthera leo", "lion"),
        animal("jaguar", JAGUAR, "Panthera onca", "jaguar"),
        animal("ocelot", OCELOT, "Leopardus pardalis", "ocelot"),
        animal("tusker", AFRICAN_ELEPHANT, "Loxodonta africana", "African elephant"),
        animal("indian elephant", ASIAN_ELEPHANT, "Elephas maximus", "Asian elephant"),
        Taxon("scuba diver", "human"),
        Taxon("pickup", "vehicle"),
        Taxon("rock", "object"),
    ]


RULES = {
    LEOPARD: {"allow": {"KEN": [], "IND": []}},
    LION: {"allow": {"KEN": []}},
    JAGUAR: {"allow": {"BRA": [], "USA": ["AZ"]}},
    AFRICAN_ELEPHANT: {"allow": {"KEN": []}},
    ASIAN_ELEPHANT: {"allow": {"IND": []}},
    OCELOT: {"block": {"KEN": []}},
}


def _scores(**named: float) -> np.ndarray:
    names = [t.label for t in _taxa()]
    out = np.zeros(len(names), np.float32)
    for name, value in named.items():
        out[names.index(name.replace("_", " "))] = value
    return out


def _roll(scores, country=None, admin1=None, species=0.65, rollup=0.65):
    index = TaxonIndex(_taxa())
    fence = Geofence(RULES, country, admin1, species_keys=index.species_keys)
    return index.rollup(scores, fence, species, rollup)


def test_a_confident_allowed_species_is_reported_as_that_species():
    result = _roll(_scores(leopard=0.8, lion=0.1), country="KEN")
    assert (result.key, result.level) == (LEOPARD, "species")
    assert abs(result.score - 0.8) < 1e-6


def test_uncertain_species_roll_up_to_the_genus_their_scores_share():
    result = _roll(_scores(leopard=0.4, lion=0.3, ocelot=0.2), country="KEN")
    assert result.level == "genus"
    assert result.key == "mammalia;carnivora;felidae;panthera;"
    assert abs(result.score - 0.7) < 1e-6
    assert [step["level"] for step in result.path] == ["species", "genus"]


def test_rollup_continues_to_family_when_no_genus_is_confident():
    result = _roll(_scores(leopard=0.35, ocelot=0.35), country="KEN")
    # ocelot is fenced out of Kenya, but its score still counts towards Felidae
    assert result.level == "family" and result.key == "mammalia;carnivora;felidae;;"


def test_a_species_outside_its_range_is_never_reported_there():
    kenya = _roll(_scores(jaguar=0.9), country="KEN")
    # Panthera still has members allowed in Kenya (leopard, lion), so the genus stands.
    assert kenya.key == "mammalia;carnivora;felidae;panthera;" and kenya.level == "genus"
    assert any(step.get("geofenced") for step in kenya.path)
    assert _roll(_scores(jaguar=0.9), country="BRA").key == JAGUAR


def test_an_african_elephant_seen_in_india_does_not_even_keep_its_genus():
    result = _roll(_scores(tusker=0.9), country="IND")
    assert result.key == "mammalia;proboscidea;elephantidae;;"
    assert result.level == "family"


def test_admin1_narrows_usa_rules_and_an_unknown_state_is_not_held_against_a_species():
    assert _roll(_scores(jaguar=0.9), country="USA", admin1="AZ").key == JAGUAR
    assert _roll(_scores(jaguar=0.9), country="USA", admin1="ME").key != JAGUAR
    assert _roll(_scores(jaguar=0.9), country="USA").key == JAGUAR


def test_without_a_location_nothing_is_fenced():
    assert _roll(_scores(jaguar=0.9)).key == JAGUAR


def test_block_rules_fence_out_only_the_listed_countries():
    assert _roll(_scores(ocelot=0.9), country="KEN").key != OCELOT
    assert _roll(_scores(ocelot=0.9), country="BRA").key == OCELOT


def test_nothing_is_named_when_even_the_kingdom_is_below_threshold():
    result = _roll(_scores(leopard=0.2, rock=0.7))
    assert result.key is None


def test_only_the_top_five_animal_scores_are_summed():
    taxa = [
        Taxon(f"cat{i}", "animal", split_taxonomy(f"mammalia;carnivora;felidae;felis;sp{i}"))
        for i in range(8)
    ]
    index = TaxonIndex(taxa)
    scores = np.full(8, 0.1, np.float32)
    result = index.rollup(scores, Geofence({}, None, None), 0.65, 0.45)
    assert result.level == "genus" and abs(result.score - 0.5) < 1e-6


def test_kind_scores_sum_each_kind_and_speciesnet_labels_parse():
    index = TaxonIndex(_taxa())
    kinds = index.kind_scores(_scores(leopard=0.5, scuba_diver=0.2, pickup=0.1, rock=0.2))
    assert abs(kinds["animal"] - 0.5) < 1e-6 and abs(kinds["human"] - 0.2) < 1e-6
    assert abs(kinds["vehicle"] - 0.1) < 1e-6 and not index.has_blank_class
    human = Taxon.from_speciesnet("u1;mammalia;primates;hominidae;homo;sapiens;human")
    blank = Taxon.from_speciesnet("u2;;;;;;blank")
    leopard = Taxon.from_speciesnet(f"u3;{LEOPARD};leopard")
    assert (human.kind, blank.kind, leopard.kind) == ("human", "blank", "animal")
    assert leopard.scientific_name == "Panthera pardus"
    assert scientific_name_of("mammalia;carnivora;felidae;;") == "Felidae"
