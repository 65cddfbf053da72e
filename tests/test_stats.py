import pytest

from llmping.stats import mean_ci95, percentile


def test_percentile_interpolates_like_numpy_linear():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.7)


def test_percentile_single_value():
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_mean_ci95_contains_mean_and_narrows_with_count():
    mean, stddev, low, high = mean_ci95([10.0, 12.0, 14.0])
    assert mean == pytest.approx(12.0)
    assert stddev == pytest.approx(2.0)
    assert low < mean < high
    _, _, low_many, high_many = mean_ci95([10.0, 12.0, 14.0] * 100)
    assert high_many - low_many < high - low


def test_mean_ci95_single_value_collapses():
    assert mean_ci95([5.0]) == (5.0, 0.0, 5.0, 5.0)
