"""The gazetteer: every province and prefecture-level city, and which place a question is about."""
import pytest

from bot.config import PROJECT_ROOT
from bot.regions import Gazetteer
from bot.text import normalise


@pytest.fixture(scope="module")
def gazetteer():
    return Gazetteer.from_file(PROJECT_ROOT / "knowledge" / "regions.yml")


def test_ships_all_provinces_and_prefecture_level_cities(gazetteer):
    provinces = {r.name for r in gazetteer.regions.values() if r.province == r.name}
    assert len(provinces) == 34  # 23 provinces (incl. Taiwan), 5 autonomous regions, 4 municipalities, 2 SARs
    cities = [r for r in gazetteer.regions.values() if r.province != r.name]
    assert len(cities) >= 333
    assert gazetteer.get("广州").province == "广东省" and gazetteer.get("延边").province == "吉林省"


def test_destination_matters_for_arrival_rules(gazetteer):
    text = normalise("我在上海，去北京要隔离吗")
    assert [(m.region.name, m.role) for m in gazetteer.mentions(text)] == [("上海市", "location"), ("北京市", "destination")]
    assert gazetteer.relevant(text).name == "北京市"
    assert gazetteer.relevant(normalise("从广州回成都要做核酸吗")).name == "成都市"
    assert gazetteer.relevant(normalise("I'm in Shanghai and flying to Beijing tomorrow")).name == "北京市"
    assert gazetteer.relevant(normalise("我在杭州")).name == "杭州市"


def test_traditional_and_abbreviations(gazetteer):
    assert gazetteer.relevant(normalise("我在廣州")).name == "广州市"
    assert gazetteer.relevant("沪").name == "上海市"  # a one-character abbreviation only as the whole message
    assert gazetteer.relevant(normalise("南京的核酸点")).name == "南京市"  # 京 inside 南京 is not Beijing


def test_no_place_no_region(gazetteer):
    assert gazetteer.relevant(normalise("核酸结果多久出来")) is None


def test_province_variant_applies_to_its_cities(gazetteer):
    assert gazetteer.matches("广东省", "深圳市") and gazetteer.matches("北京市", "北京市")
    assert not gazetteer.matches("上海市", "北京市") and not gazetteer.matches("北京市", None)
