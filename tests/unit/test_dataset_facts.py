"""Each dataset's registry entry declares its own facts, and they match the data."""
import pytest

from datasets import DATASETS, by_benchmark, efficiency_reference, load_dataset
from datasets.cache import get_spec


def test_built_in_glyphs_has_the_declared_shape_classes_and_normalisation():
    info, data = DATASETS.get("glyphs"), load_dataset("glyphs")
    assert (data.channels, data.image_size) == (info.channels, info.image_size)
    assert (data.train.n_classes, data.val.n_classes, data.test.n_classes) == info.classes
    assert info.mean is None and info.std is None  # computed from the train split's pixels
    assert len(data.mean) == len(data.std) == info.channels


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if DATASETS.get(n).needs_files])
def test_datasets_with_files_declare_what_their_reader_checks(name):
    info, spec = DATASETS.get(name), get_spec(name)
    assert info.classes == spec.standard
    if info.mean is not None:
        assert (info.mean, info.std) == (spec.mean, spec.std)
        assert len(info.mean) == info.channels


def test_omniglot_files_have_the_declared_shape(omniglot_root):
    info, data = DATASETS.get("omniglot"), load_dataset("omniglot", omniglot_root)
    assert (data.channels, data.image_size) == (info.channels, info.image_size)


def test_benchmark_ids_are_unique_and_one_dataset_is_the_timing_reference():
    assert len(by_benchmark()) == len(DATASETS.names())
    assert by_benchmark()[efficiency_reference().benchmark] == efficiency_reference().name
