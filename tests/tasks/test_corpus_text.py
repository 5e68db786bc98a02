import pytest

from speechpeft.tasks.corpus import commands, text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  It's   a 'test' -- really?  ", "it's a test really"),
        ('"Quoted"; semi: colon.', "quoted semi colon"),
        ("''", ""),
    ],
)
def test_normalise(raw, expected):
    assert text.normalise(raw) == expected


def test_speakable_sentences_filters_to_whole_dictionary_sentences():
    dictionary = frozenset(["the", "cat", "sat", "on", "a", "mat", "is", "it", "not", "so", "dog", "ran", "rev"])
    entries = [
        "The cat sat on the mat.  Is it not so?\n\t\t-- Rev. Smith",  # attribution dropped
        "A dog ran 3 miles.",  # digit
        "the cat sat on a mat.",  # no capital: a fragment
        "The cat sat on the Rev.",  # ends in an abbreviation
        "THE CAT SAT ON THE MAT.",  # shouting
        "The cat sat on the zebra.",  # not in the dictionary
        "Cat sat.",  # too short
        "The cat sat on the mat.",  # duplicate
    ]
    assert text.speakable_sentences(entries, dictionary) == ["is it not so", "the cat sat on the mat"]


def test_dictionary_drops_acronyms(tmp_path):
    words = tmp_path / "words"
    words.write_text("TV\nNASA\nI\nParis\ncat\n")
    assert text.load_dictionary(words) == frozenset({"i", "paris", "cat"})


def test_missing_fortunes_names_the_package(tmp_path):
    with pytest.raises(text.MissingTextSourceError, match="apt-get install fortunes"):
        next(text.fortune_entries(tmp_path))


def test_fortunes_give_thousands_of_sentences():
    sentences = text.speakable_sentences(text.fortune_entries(), text.load_dictionary())
    assert len(sentences) > 5_000
    assert all(text.is_transcript(s) and 3 <= len(s.split()) <= 14 for s in sentences)


def test_stable_fraction_is_fixed_by_text():
    assert text.stable_fraction("turn on the lights") == text.stable_fraction("turn on the lights")
    assert 0 <= text.stable_fraction("a") < 1 and text.stable_fraction("a") != text.stable_fraction("b")


def test_read_text_file_keeps_speakable_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("Hello there.\n\nCall 911 now\nHello there!\nI'm fine\n")
    assert text.read_text_file(path) == ["hello there", "i'm fine"]


def test_commands_cover_at_least_ten_intents_with_slots_in_the_text():
    all_commands = commands.all_commands()
    assert len({c.intent for c in all_commands}) >= 10
    assert len({c.text for c in all_commands}) == len(all_commands)
    for command in all_commands:
        assert text.is_transcript(command.text), command
        assert all(value in command.text for _, value in command.slots)


def test_command_expansion_fills_every_slot_combination():
    expanded = commands.expand("{day} in {city}", "weather")
    assert len(expanded) == len(commands.SLOT_VALUES["day"]) * len(commands.SLOT_VALUES["city"])
    assert expanded[0] == commands.Command("today in london", "weather", (("day", "today"), ("city", "london")))
    assert expanded[0].slots_json() == '[{"slot": "day", "value": "today"}, {"slot": "city", "value": "london"}]'
