"""The taxa a reviewer picks from: the serving pack's species and their ancestors."""

from __future__ import annotations

from cloud_stub.review.taxa import TaxonList


def test_a_species_that_several_labels_share_is_not_named_after_one_of_them():
    # ImageNet's tabby, tiger cat, Persian, Siamese and Egyptian cat are all Felis catus: a
    # reviewer's "Felis catus" must not be recorded as "tabby" (nor the dog as one breed).
    taxa = TaxonList.from_pack()
    cat = taxa.resolve("Felis catus")
    assert cat is not None and cat.taxonomy == "mammalia;carnivora;felidae;felis;catus"
    assert cat.common_name is None
    dog = taxa.resolve("Canis familiaris")
    assert dog is not None and dog.common_name is None


def test_a_species_with_one_label_keeps_its_common_name():
    lion = TaxonList.from_pack().resolve("lion")
    assert lion is not None and lion.scientific_name == "Panthera leo"
    assert lion.common_name == "lion"
