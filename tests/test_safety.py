"""The emergency decision's parts that do not need a model: the learned detector's scope veto (a pure
function of hand-made numbers) and the regex floor in knowledge/safety.yml (questions ABOUT a symptom
must not match, a person in danger must)."""
from __future__ import annotations

import pytest

from bot.config import PROJECT_ROOT
from bot.safety import EmergencyDetector, learned_alarm
from bot.text import normalise


def test_below_the_threshold_is_never_an_alarm():
    assert not learned_alarm(0.40, None, threshold=0.41, sure=0.54, scope_answer=0.51)
    assert not learned_alarm(0.40, 0.0, threshold=0.41, sure=0.54, scope_answer=0.51)


def test_unsure_alarm_on_a_question_the_kb_answers_is_vetoed():
    # "我爸在家隔离，降压药只剩三天的量了": P(emergency) 0.50, the KB answers it (scope 0.8)
    assert not learned_alarm(0.50, 0.80, threshold=0.41, sure=0.54, scope_answer=0.51)
    assert not learned_alarm(0.50, 0.51, threshold=0.41, sure=0.54, scope_answer=0.51)  # boundary: answered


def test_unsure_alarm_on_a_question_the_kb_does_not_answer_stands():
    assert learned_alarm(0.50, 0.50, threshold=0.41, sure=0.54, scope_answer=0.51)
    assert learned_alarm(0.42, 0.05, threshold=0.41, sure=0.54, scope_answer=0.51)


def test_a_sure_detector_alarms_whatever_the_kb_says():
    # "打完疫苗全身起疹子，喉咙发紧说不出话": about a KB topic (scope 0.94) and a red flag (P 0.87)
    assert learned_alarm(0.87, 0.94, threshold=0.41, sure=0.54, scope_answer=0.51)
    assert learned_alarm(0.54, 0.99, threshold=0.41, sure=0.54, scope_answer=0.51)  # boundary: sure


def test_the_surer_the_kb_answers_the_surer_the_detector_must_be():
    """Round 6: the band's top rises with the scope (``slope``). "刚吃完早饭就去捅嗓子会不会吐" scored P 0.30 at scope
    0.90 under a flat band of 0.26 and alarmed; a barely-answered question keeps the flat band."""
    args = dict(threshold=0.06, sure=0.25, scope_answer=0.44, slope=0.2)
    assert learned_alarm(0.30, 0.90, **{**args, "slope": 0.0})  # the flat band: an alarm
    assert not learned_alarm(0.30, 0.90, **args)      # top 0.25 + 0.2 x (0.90 - 0.44) / 0.56 = 0.414
    assert not learned_alarm(0.40, 0.99, **args)      # top 0.25 + 0.2 x (0.99 - 0.44) / 0.56 = 0.446
    assert learned_alarm(0.45, 0.99, **args)
    assert learned_alarm(0.26, 0.45, **args)          # just answerable: top 0.254
    assert learned_alarm(0.07, 0.43, **args)          # not answerable: the threshold alone
    assert learned_alarm(0.46, 1.0, **args)           # at scope 1: sure + slope = 0.45


def test_a_short_message_alarms_the_detector_alone_only_when_it_is_sure():
    """Round 6's detector learned farewells, and short chat scored over its threshold of 0.05-0.06 ("我再想想" 0.15-0.30,
    "王阿姨" 0.64, "never mind i found it" 0.63). Short red flags are explicit (P 1.00) or the regex floor's."""
    from bot.safety import SHORT_SURE, message_size

    assert message_size(normalise("我再想想")) == 4 and message_size(normalise("never mind i found it")) == 5
    assert message_size(normalise("我爸 can't breathe")) == 5  # 2 characters + 3 Latin words (can, t, breathe)
    args = dict(threshold=0.06, sure=0.26, scope_answer=0.44)
    assert learned_alarm(0.64, 0.10, **args) and not learned_alarm(0.64, 0.10, short=True, **args)
    assert learned_alarm(SHORT_SURE, 0.10, short=True, **args)  # "I've been stabbed": P 1.00


def test_no_scope_model_or_no_veto_means_the_threshold_alone_decides():
    assert learned_alarm(0.45, None, threshold=0.41, sure=0.54, scope_answer=0.51)
    assert learned_alarm(0.45, 0.99, threshold=0.41, sure=0.0, scope_answer=0.51)


@pytest.fixture(scope="module")
def floor():
    return EmergencyDetector.from_file(PROJECT_ROOT / "knowledge" / "safety.yml")


@pytest.mark.parametrize("text", [
    "隔离憋得慌，想找个专业的人聊聊",        # stir-crazy, not breathless
    "封控在家一个月，心里憋得慌",
    "家里有血氧仪，血氧低到多少要去医院",      # a question about the threshold
    "血氧低于几要去医院",
    "戴口罩没法呼吸，能不能不戴",               # a mask complaint
    "上个月晕倒过一次，现在能打疫苗吗",          # a history (晕倒过), not a collapse now
    "小时候昏迷过，能打新冠疫苗吗",
    "嗓子发紧是新冠的症状吗",                   # throat tightness alone, asked about
    "过敏性休克的人能打疫苗吗",                  # a history of a severe allergy
    "is anaphylaxis after the covid vaccine common",
    "my throat feels tight, is that covid",
    "鼻塞了晚上没法呼吸，睡不着，怎么办",            # a blocked nose (round 6's review)
    "戴着口罩感觉没法呼吸，可以摘吗",
    "新冠会导致不能呼吸吗",                          # asked about
    "健康码拍照上传没反应怎么办",                     # an app, not a person
    "核酸点叫号半天没反应",
    "孩子得了疱疹性咽峡炎，喉咙肿，能做核酸吗",       # 疱疹 is no rash of an allergy
    "my throat feels tight when i take a deep breath, is that covid",
    "swollen glands and my throat is swollen, is it covid",
])
def test_floor_ignores_questions_and_idioms(floor, text):
    assert floor.run(normalise(text)) is None


@pytest.mark.parametrize("text", [
    "胸口憋得慌，喘不上气",
    "我爸憋得慌，一直大口喘气",
    "我妈血氧88了",
    "血氧低到90，嘴唇有点紫",
    # round 6: "can't breathe" in other words, a collapse now, an allergic reaction (throat and rash or swelling)
    "媽媽快沒辦法呼吸了，救護車要多久才會到",
    "老人吸不到气了",
    "我爸刚才晕倒了",
    "打完疫苗半小时，嗓子发紧，脸也肿了",
    "全身起疹子，喉咙发紧",
    "got the jab, now hives all over and my throat feels tight",
    "排队的时候前面一个老人倒在地上，没反应了",         # someone down and not responding
    "喊我爸半天都没反应",
    "孩子突然抽搐，口吐白沫",
    "我爸突然昏迷过去了",                            # 过去: passing out now (round 6's review)
    "他刚刚晕倒过去，现在没意识",
    "孩子刚才抽搐过一次，现在叫不太醒",
])
def test_floor_still_catches_people_in_danger(floor, text):
    assert floor.run(normalise(text)) is not None


# -- other vaccines and diseases (bot.scope.OtherSubjects, knowledge/scope/other_subjects.yml) --------------

def test_other_subjects_are_found_only_when_the_entry_never_mentions_them():
    from bot.scope import OtherSubjects

    subjects = OtherSubjects({"hpv": ["hpv", "宫颈癌疫苗"], "influenza": ["流感疫苗", "flu shot"]})
    entry = "新冠疫苗在哪里打 where can i get a covid-19 vaccine"
    assert subjects.find(normalise("打完HPV疫苗多久可以怀孕"), entry) == ("hpv",)
    assert subjects.find(normalise("Where can I get a flu shot?"), entry) == ("influenza",)
    assert subjects.find(normalise("新冠疫苗在哪里打"), entry) == ()
    assert subjects.find(normalise("流感疫苗和新冠疫苗能一起打吗"), entry + " 流感疫苗可以同时接种") == ()
    assert subjects.find(normalise("I have flu-like symptoms"), entry) == ()  # not a named vaccine


def test_the_shipped_list_loads_and_reads_traditional_text():
    from bot.scope import OtherSubjects

    subjects = OtherSubjects.from_dir(PROJECT_ROOT / "knowledge")
    assert subjects.find(normalise("帶狀皰疹疫苗副作用大嗎"), "新冠疫苗的副作用") == ("shingles",)
    assert subjects.find(normalise("How much is the chickenpox vaccine?"), "vaccine cost") == ("chickenpox",)
    assert subjects.find(normalise("阳了以后得了肺炎要去医院吗"), "阳了什么情况需要去医院") == ()


def test_common_words_are_not_other_subjects():
    from bot.scope import OtherSubjects

    subjects = OtherSubjects.from_dir(PROJECT_ROOT / "knowledge")
    entry = "打热线之前要准备什么 what information should i have ready before calling"
    assert subjects.find(normalise("what info should I have on hand when I call the hotline"), entry) == ()
    assert subjects.find(normalise("my mum uses hearing aids, how can she reach the hotline"), entry) == ()


@pytest.mark.parametrize("text,entry,found", [
    # another medical test's result time, fasting rule or report is not a COVID test's
    ("前天去医院验血，结果多久能出来", "核酸检测结果多久能出来", ("blood_test",)),
    ("明天要做胃镜，前一晚几点开始不能吃东西", "做核酸之前能吃东西吗", ("endoscopy",)),
    ("When will my MRI results be ready?", "how long do pcr results take", ("imaging",)),
    ("核酸的CT值是什么意思", "核酸检测结果多久能出来", ()),  # a PCR result's Ct value is not imaging
    ("ct value 32, is that still positive", "what does the ct value on my report mean", ()),
    ("做ct值多少算阳性", "核酸报告上的ct值是什么意思", ()),  # "做CT" followed by 值: the value, not a scan
    # ...a CT scan is (it was left out with the Ct value: "做CT要提前预约吗" was answered with booking a PCR test)
    ("下周要拍个肺部CT，需要先预约吗", "做核酸要预约吗", ("imaging",)),
    ("How long do CT scan results take?", "how long do pcr results take", ("imaging",)),
    # another thing's ticket or membership is not a cancelled trip's refund...
    ("音乐会取消了，票钱能退吗", "行程取消了车票机票怎么退", ("concert",)),
    ("Can I get my money back for a gym membership I can't use?", "refund of a cancelled trip", ("gym",)),
    # ...unless the entry talks about it itself
    ("演唱会现在让办吗", "大型活动 演唱会展会让不让办", ()),
    # a pet's test is not a child's (CI failed when "我家猫咪要不要测核酸" got the children's testing entry
    # at P 0.553 over a scope_answer of 0.53)...
    ("我家猫咪要不要测核酸", "小孩能做核酸吗 儿童 采样 家长陪同", ("animals",)),
    ("Does my dog need a PCR test before we fly?", "do children need a pcr test before travelling", ("animals",)),
    # ...but the KB's own pet entries still answer pet questions
    ("带狗坐高铁要什么证明", "带宠物出行 带猫坐火车可以吗 狗狗能跟我坐高铁吗", ()),
    # a dentist's or a specialist's appointment is not a PCR test's
    ("拔智齿要不要提前预约", "做核酸要预约吗", ("other_care",)),
    ("Do I need to book ahead to see a dentist?", "do I need an appointment for a pcr test", ("other_care",)),
    ("医院做核酸在哪挂号", "做核酸要预约吗 医院做核酸在哪挂号", ()),  # 挂号 alone is no other care
    # a named medicine's safety or dose is not the entry's unless the entry names it
    ("吃了头孢能喝酒吗", "做核酸前能吃东西喝水吗", ("medicines",)),
    # round 6: the trade in kits, jobs and pay at testing sites, other offices' documents, a hay fever
    ("想批发抗原试剂盒，有没有厂家的联系方式", "在哪里能买到抗原试剂", ("commerce",)),
    ("I have antigen test kits to sell wholesale", "where can I buy antigen test kits", ("commerce",)),
    ("核酸采样员一个月工资多少", "做一次核酸多少钱", ("jobs",)),
    ("方舱医院招不招护士", "方舱医院是什么", ("jobs",)),
    ("被隔离了公司扣工资合法吗", "隔离期间工资怎么发 被隔离了公司扣工资", ()),  # the KB's own pay entry
    ("How do I get a police clearance certificate?", "how do I get my vaccination certificate", ("civil_documents",)),
    ("I'm a foreigner on a work visa, the health code app won't verify my passport",
     "foreigners apply for a health code with a passport", ()),  # a visa named as context is no subject
    ("花粉过敏一直打喷嚏是不是阳了", "新冠的症状有哪些", ("allergy",)),
    ("Is cough syrup safe for a 5 year old?", "can children get the covid vaccine", ("medicines",)),
    ("阳了能吃布洛芬吗", "阳了能吃布洛芬吗 居家 退烧药", ()),
    ("封控期间降压药吃完了怎么办", "居家隔离期间慢性病的药怎么续方", ()),  # routine medicine is the KB's own
])
def test_other_medical_tests_and_tickets_are_other_subjects(text, entry, found):
    from bot.scope import OtherSubjects

    subjects = OtherSubjects.from_dir(PROJECT_ROOT / "knowledge")
    assert subjects.find(normalise(text), entry) == found


@pytest.mark.parametrize("text,found", [
    ("英国现在还戴口罩吗", ("united_kingdom",)),              # another country's rules
    ("韓國入境需要隔離嗎", ("south_korea",)),
    ("Does Canada still require masks on planes?", ("canada",)),
    ("Are masks still required on trains in the UK?", ("united_kingdom",)),  # the short names, as whole words
    ("Does the USA still ask for a vaccine certificate?", ("united_states",)),
    ("flying in from the UK next week, do I need a test on arrival", ()),
    ("下个月从美国回国，落地后要隔离吗", ()),                   # where the citizen comes FROM: an arrival question
    ("arriving from Japan next week, do I need a test", ()),
    ("我们公司有个德国同事，他的健康码怎么弄", ()),              # a nationality
    ("台北捷運現在還要戴口罩嗎", ("taiwan",)),                  # Hong Kong, Macao and Taiwan make their own rules
    ("Do I need a PCR test to enter Hong Kong?", ("hong_kong",)),
    ("从香港回深圳要隔离吗", ()),                              # coming from there: an arrival question
    ("I'm on a work visa with a US passport, how do I get a health code", ()),
])
def test_other_countries_count_only_as_the_place_whose_rules_are_asked(text, found):
    from bot.scope import OtherSubjects

    subjects = OtherSubjects.from_dir(PROJECT_ROOT / "knowledge")
    assert subjects.find(normalise(text), "公共场所还要戴口罩吗 入境 隔离") == found


def test_other_countries_do_not_count_against_an_entry_that_is_not_about_rules():
    from bot.scope import OtherSubjects

    subjects = OtherSubjects.from_dir(PROJECT_ROOT / "knowledge")
    assert subjects.find(normalise("英国现在还戴口罩吗"), "口罩", rules_entry=False) == ()
    assert subjects.find(normalise("英国现在还戴口罩吗"), "英国的口罩规定") == ()  # the entry talks about it


# -- named persons (bot.scope.PersonNames, the ``persons`` section of other_subjects.yml) ------------------

def test_person_names_by_each_rule_and_what_is_not_a_name():
    from bot.scope import PersonNames

    dictionary = {"张贴": 401, "李秀英": 3, "建华": 342, "钱能": 0, "江北区": None, "白屏": None}
    names = PersonNames("王李张刘吴黄钱江", ["老师", "小姐"], ["同事", "先生"], dictionary.get)
    assert names.find(["王芳", "的", "健康码"]) == ("王芳",)            # no dictionary word
    assert names.find(["帮", "我查", "李秀英", "的", "核酸"]) == ("李秀英",)  # a rare one (jieba: nr, 3)
    assert names.find(["刘老师", "被", "隔离"]) == ("刘老师",)          # surname + title
    assert names.find(["我", "同事", "黄", "小姐", "被", "隔离"]) == ("黄小姐",)  # cut off its title
    assert names.find(["我", "先生", "吴", "建华", "什么", "时候"]) == ("吴建华",)  # after a relation
    assert names.find(["我", "邻居", "老李", "是不是", "阳性"]) == ("老李",)
    assert names.find(["张贴", "的", "码"]) == ()                      # a dictionary word
    assert names.find(["这", "张票", "能", "退"]) == ()                 # a measure word
    assert names.find(["机票", "钱能", "退"]) == ()                     # 能 is no given name
    assert names.find(["江北区", "发热门诊"]) == ()                      # a place
    assert names.find(["健康码", "一直", "白屏"]) == ()                  # 白 is not in this list
    assert names.find(["我", "叫", "王芳", "核酸", "多少", "钱"]) == ()    # the citizen's own name
    assert names.find(["黄", "码", "怎么", "办"]) == ()                  # a lone surname needs a title or a relation


def test_the_shipped_names_count_against_an_entry_only_with_the_tokenizer():
    from bot.scope import OtherSubjects
    from bot.text import DomainTokenizer, SynonymMap

    knowledge = PROJECT_ROOT / "knowledge"
    tokenizer = DomainTokenizer(knowledge / "userdict.txt", SynonymMap.from_file(knowledge / "synonyms.yml"))
    subjects = OtherSubjects.from_dir(knowledge, tokenizer.frequency)

    def find(text: str, entry: str = "健康码颜色代表什么") -> tuple[str, ...]:
        return subjects.find(normalise(text), entry, words=tokenizer.words(normalise(text)))

    assert find("王芳的健康码现在是啥颜色") == ("person:王芳",)
    assert find("我同事黃小姐被隔離在哪裡") == ("person:黄小姐",)  # Traditional, normalised to Simplified
    assert find("我邻居老李是不是阳了") == ("person:老李",)
    for text in ("健康码红黄绿分别代表什么", "张贴的场所码扫不出来", "这张核酸报告能用几天", "江北区发热门诊在几楼",
                 "健康码一直白屏", "我叫张伟，核酸多少钱"):
        assert find(text) == (), text
    assert OtherSubjects.from_dir(knowledge).find(normalise("王芳的健康码是啥颜色"), "", words=["王芳"]) == ()


def test_pinyin_names_in_english_questions_by_each_shape_and_what_is_not_a_name():
    """Round 5b: "What colour is Chen Ming's health code right now?" was answered with the colours entry (the
    names were looked for among Chinese words only)."""
    from bot.scope import PersonNames

    latin = {"surnames": ["chen", "wang", "li", "zhang", "zhou", "he", "long"], "english_words": ["he", "long"],
             "honorifics": ["mr", "mrs"], "titles": ["uncle", "auntie"], "relations": ["colleague", "son"]}
    names = PersonNames("陈", [], [], {}.get, latin=latin)

    def find(text: str) -> tuple[str, ...]:
        return names.find_latin(normalise(text))

    assert find("What colour is Chen Ming's health code right now?") == ("chen ming",)  # surname + given + 's
    assert find("Has Zhang Xiaoming’s PCR result come out?") == ("zhang xiaoming",)     # two syllables, ’
    assert find("Is my neighbour Mr. Wang in quarantine?") == ("wang",)                 # honorific
    assert find("Why was Mr He taken away?") == ("he",)                                 # any surname after one
    assert find("Is Auntie Li a close contact?") == ("li",)                             # title
    assert find("my colleague, Zhang Wei tested positive") == ("zhang wei",)           # relation + full name
    assert find("I'm Zhang Wei's mother, is his result out?") == ("zhang wei",)        # not the citizen's own
    assert find("I'm Mr Wang's wife, can I collect his report?") == ("wang",)           # nor here (review)
    assert find("I recalled Mr Wang saying the site closes early") == ("wang",)        # "called" is no self-intro
    for text in ("how long does he have to isolate", "my uncle he said the test is free",  # English words
                 "my son long ago had covid", "Dr Zhang said I must isolate",            # a doctor's report
                 "my name is Mr Wang, how much is a PCR test", "what's the hotline's number",
                 "can I get Li's test", "Chen's", "Mr Smith is my neighbour",
                 "after a long time's wait for my result, what do I do?"):              # review: "long time's"
        assert find(text) == (), text
    assert PersonNames("陈", [], [], {}.get).find_latin("what colour is chen ming's code") == ()  # no lists: none


def test_a_pinyin_name_counts_against_an_entry_only_as_a_whole_word():
    from bot.scope import OtherSubjects

    subjects = OtherSubjects.from_dir(PROJECT_ROOT / "knowledge", frequency={}.get)
    question = normalise("Is Auntie Li still in quarantine?")
    assert subjects.find(question, "how long is quarantine; call the hotline") == ("person:li",)  # "li" in "line"
    assert subjects.find(question, "auntie li's quarantine") == ()
    assert subjects.find(normalise("Will I miss long distance trains if I quarantine?"), "") == ()  # "miss" (review)


# -- the scope model's evidence (bot.scope.scope_evidence, knowledge/thresholds/use.yml) ----------------------

def test_a_place_name_is_no_word_the_top_entry_lacks():
    """Round 5d: "从广州回深圳要做核酸吗" was "not covered" (P 0.24): 广州 and 深圳, words no entry uses, weighed
    against the top entry as if the question were about something else. With the gazetteer's lookup they do not
    count; other words the entry lacks still do."""
    from bot.regions import Gazetteer
    from bot.retrieval import Candidate
    from bot.scope import Vocabulary, scope_evidence

    gazetteer = Gazetteer.from_file(PROJECT_ROOT / "knowledge" / "regions.yml")
    vocabulary = Vocabulary({"testing.travel_test": ["出行", "要", "核酸检测"], "testing.pcr_sites": ["核酸检测", "哪里"]})
    candidates = [Candidate("testing.travel_test", 0.36, 0.75, 0.9, 0.17), Candidate("testing.pcr_sites", 0.27, 0.7, 0.9)]

    def uncovered(words: list[str], places=None) -> float:
        return scope_evidence(candidates, words, vocabulary, "zh", 0.8, places).as_dict()["uncovered_top"]

    trip = ["从", "广州", "回", "深圳", "要", "核酸检测", "吗"]
    assert uncovered(trip) > 0.5 and uncovered(trip, gazetteer.get) == 0.0
    tower = ["广州塔", "门票", "多少钱"]  # a sight, not a city: still words the entry lacks
    assert uncovered(tower, gazetteer.get) == uncovered(tower) == 1.0
    for alone in (["广州"], ["来宾"]):  # nothing but a place (来宾: a city, and "guest"): nothing else to go by
        assert uncovered(alone, gazetteer.get) == uncovered(alone) == 1.0

def test_a_wide_margin_counts_only_as_far_as_the_question_is_in_the_kbs_domain():
    """Round 4: out-of-KB questions that share one word with an entry often put it far ahead of the rest. With
    margin × topic in the evidence, the shipped model raises P(answerable) for a wide margin much more for an
    in-domain question than for one the topic classifier places outside the KB (the old linear model raised both
    alike, and answered such questions on the margin alone)."""
    import math

    from bot.config import Settings
    from bot.retrieval import Candidate
    from bot.scope import ScopeModel, Vocabulary, scope_evidence

    t = Settings().thresholds
    model = ScopeModel(t.scope_coef, t.scope_intercept)
    vocabulary = Vocabulary({"testing.pcr_fee": ["核酸", "检测", "多少钱"], "testing.pcr_sites": ["核酸", "哪里"]})
    words = ["核酸", "检测", "多少钱"]

    def logit(runner_up: float, in_kb: float) -> float:
        candidates = [Candidate("testing.pcr_fee", 0.62, 0.7, 0.4, 0.5), Candidate("testing.pcr_sites", runner_up, 0.5, 0.2)]
        evidence = scope_evidence(candidates, words, vocabulary, "zh", in_kb)
        assert evidence.as_dict()["margin_in_kb"] == pytest.approx((0.62 - runner_up) * in_kb)
        p = model.probability(evidence)
        return math.log(p / (1 - p))

    in_domain_gain = logit(0.35, 0.95) - logit(0.58, 0.95)
    outside_gain = logit(0.35, 0.2) - logit(0.58, 0.2)
    assert in_domain_gain > 1.2 * outside_gain > 0  # 1.75 vs 1.25 logits with the shipped model; 1.0x before
    p = model.probability(scope_evidence([Candidate("testing.pcr_fee", 0.62, 0.7, 0.4, 0.5),
                                          Candidate("testing.pcr_sites", 0.35, 0.5, 0.2)], words, vocabulary, "zh", 0.2))
    assert p < t.scope_answer  # far ahead, but outside the KB's domain: not answered
