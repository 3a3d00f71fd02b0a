"""Open-vocabulary English text for the demo model, from named sources, in spoken form.

Training text (`training_texts`):
- usage examples of WordNet 3.0 (Debian package `wordnet-base`; WordNet 3.0 licence):
  ~42,000 short sentences and phrases over the whole of English;
- everyday sentences of tools/demo_corpus.py (the first demo's templates, so that the model
  keeps what it is measured on in the held-out sets);
- numbers, dates, times, prices, measures, phone numbers, names and places, made here over
  Faker's names, countries and US states (PyPI `Faker`, MIT) and the cities of the tz database
  (Debian `tzdata`, public domain);
- word sequences drawn from wordfreq's 30,000 most frequent English words (PyPI `wordfreq`;
  its data CC BY-SA 4.0), so that the spelling of words outside the sentences is heard too.
Evaluation text (`evaluation_texts`) comes from another source: sentences of the Debian
package `fortunes` (fortune-mod's cookies; public domain and free licences per file).

Everything is normalized to what a speaker says: lower case, numbers as words, no punctuation
but apostrophes. espeak-ng speaks that same text, so a reference never disagrees with the
audio about how "1984" or "$5" is read. Deterministic for a seed.
"""

from __future__ import annotations

import itertools
import random
import re
from functools import lru_cache
from pathlib import Path

from tools.demo_corpus import number_words

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
ZONEINFO_DIR = Path("/usr/share/zoneinfo")
# Fortune files of other languages, verse laid out as art, or mostly names and code.
FORTUNES_SKIPPED = {"ascii-art", "art", "debian", "linuxcookie", "knghtbrd", "perl", "off", "riddles",
                    "definitions", "computers", "linux", "startrek", "zippy", "goedel", "magic"}
SOURCES = {
    "wordnet": "WordNet 3.0 usage examples, Debian package wordnet-base (WordNet 3.0 licence)",
    "fortunes": "fortune cookies, Debian package fortunes (public domain and free licences per file)",
    "wordfreq": "wordfreq 3.1 English word frequencies, PyPI wordfreq (code Apache 2.0, data CC BY-SA 4.0)",
    "faker": "names, countries and US states, PyPI Faker (MIT)",
    "tzdata": "city names of the tz database, Debian package tzdata (public domain)",
    "templates": "the first demo's everyday sentences, tools/demo_corpus.py (this project)",
}
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "etc", "vs", "inc", "co", "ltd", "no", "vol",
                 "prof", "gen", "col", "capt", "sgt", "lt", "gov", "rev", "ave", "mt", "ft", "pp", "cf"}
# wordfreq drops apostrophes: these would teach a wrong spelling.
CONTRACTIONS_WITHOUT_APOSTROPHE = set("""dont cant isnt didnt doesnt wasnt arent couldnt shouldnt wouldnt havent
hasnt hadnt werent aint im ive youre theyre thats whats theres youve youll weve theyve hes shes wouldve
couldve shouldve didn""".split())
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                   "nine": "ninth", "twelve": "twelfth"}
MONTHS = "january february march april may june july august september october november december".split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()


def missing_sources() -> str | None:
    """What the recipe's text sources need and this machine lacks, as one line; None if nothing."""
    import importlib.util

    missing = [f"Debian package {package} ({path})" for package, path in
               (("wordnet-base", WORDNET_DIR / "data.noun"), ("fortunes", FORTUNES_DIR / "fortunes"),
                ("tzdata", ZONEINFO_DIR / "Europe")) if not path.exists()]
    missing += [f"PyPI package {name}" for name in ("wordfreq", "faker") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return ("the training text needs " + ", ".join(missing) +
            ": apt-get install wordnet-base fortunes tzdata; pip install -r requirements-train.txt -c constraints.txt")


# ---------------------------------------------------------------- spoken form

def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in ORDINAL_ENDINGS:
        words[-1] = ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_words(n: int) -> str:
    """1984 -> nineteen eighty four, 1900 -> nineteen hundred, 2005 -> two thousand five."""
    if 2000 <= n < 2010:
        return number_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return number_words(high) + " hundred"
    return number_words(high) + " " + ("oh " + number_words(low) if low < 10 else number_words(low))


def _number(match: re.Match) -> str:
    money, digits, ordinal = match.group(1), match.group(2).replace(",", ""), match.group(3)
    n = int(digits)
    if n >= 1_000_000:
        raise ValueError("number too large")
    if ordinal:
        words = ordinal_words(n)
    elif not money and "," not in match.group(2) and len(digits) == 4 and 1100 <= n < 2100:
        words = year_words(n)
    else:
        words = number_words(n)
    return f" {words} dollars " if money else f" {words} "


def spoken(text: str) -> str | None:
    """`text` as words a speaker says, or None where that cannot be told from the text alone
    (acronyms, abbreviations, decimals, symbols, code)."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    if re.search(r"[^A-Za-z0-9 ,.;:!?'\"()\-&%$]", text) or re.search(r"\b[A-Z]{2,}\b", text):
        return None
    for token in text.split():
        bare = token.strip("\"'()").lower()
        if re.search(r"[a-z]\.[a-z]", bare) or bare.rstrip(".,;:!?") in ABBREVIATIONS and "." in bare:
            return None
    if re.search(r"\d[.:]\d|\d[a-z]+\d", text, flags=re.I):
        return None
    text = text.replace("&", " and ").replace("%", " percent ")
    try:
        text = re.sub(r"(\$)?(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th)?\b", _number, text.replace("$", " $"))
    except ValueError:
        return None
    text = text.lower()
    if re.search(r"\d", text):
        return None
    return " ".join(WORD.findall(text.replace("-", " "))) or None


# ---------------------------------------------------------------- sources

def wordnet_examples() -> list[str]:
    """WordNet's usage examples (the quoted parts of its glosses), in spoken form, in file order."""
    out: dict[str, None] = {}
    for part in ("noun", "verb", "adj", "adv"):
        with open(WORDNET_DIR / f"data.{part}", encoding="latin-1") as lines:
            for line in lines:
                if line.startswith("  "):
                    continue  # the licence header
                for quoted in re.findall(r'"([^"]+)"', line.split(" | ", 1)[-1]):
                    text = spoken(quoted)
                    if text and 3 <= len(text.split()) <= 24:
                        out[text] = None
    return list(out)


def fortune_sentences() -> list[str]:
    """Sentences of the fortune cookies, in spoken form; attributions and dialogue markup left out."""
    out: dict[str, None] = {}
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.suffix or path.name in FORTUNES_SKIPPED or not path.is_file():
            continue
        for cookie in path.read_text(encoding="latin-1").split("\n%\n"):
            cookie = re.sub(r"\s+", " ", cookie)
            for sentence in re.split(r"(?<=[.!?])\s+", cookie):
                if "--" in sentence or re.search(r"^\w+:|<\w+>|\[|\]", sentence):
                    continue
                text = spoken(sentence)
                if text and 4 <= len(text.split()) <= 18:
                    out[text] = None
    return list(out)


@lru_cache(maxsize=1)
def frequent_words(count: int = 30000) -> tuple[list[str], list[float]]:
    """wordfreq's most frequent English words that are plain words, with their frequencies."""
    import wordfreq

    words = [w for w in wordfreq.top_n_list("en", count)
             if WORD.fullmatch(w) and (len(w) > 1 or w in "ai") and w not in CONTRACTIONS_WITHOUT_APOSTROPHE]
    return words, [wordfreq.word_frequency(w, "en") for w in words]


def _cities() -> list[str]:
    names = set()
    for region in ("Africa", "America", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific"):
        folder = ZONEINFO_DIR / region
        if folder.is_dir():
            names.update(p.name.replace("_", " ") for p in folder.iterdir() if p.is_file())
    return sorted(filter(None, (spoken(name) for name in names)))


class FactMaker:
    """Sentences around numbers, dates, times, prices, measures, names and places."""

    UNITS = ["kilometres", "kilometers", "miles", "metres", "meters", "kilograms", "pounds", "litres",
             "liters", "degrees", "minutes", "hours", "seconds", "years", "days", "weeks", "percent",
             "euros", "dollars", "pounds", "people", "pages", "tickets", "grams", "centimetres", "inches"]

    def __init__(self, seed: int):
        from faker import Faker

        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.cities = _cities()
        self.countries = [c for c in (spoken(self.fake.country()) for _ in range(400)) if c]
        self.states = [s for s in (spoken(self.fake.state()) for _ in range(200)) if s]

    def number(self) -> str:
        magnitude = self.rng.choice([10, 100, 1000, 10000, 1_000_000])
        return number_words(self.rng.randrange(magnitude))

    def place(self) -> str:
        return self.rng.choice([self.rng.choice(self.cities), self.rng.choice(self.countries),
                                self.rng.choice(self.states)])

    def name(self) -> str:
        first = self.fake.first_name() if self.rng.random() < 0.8 else self.fake.first_name_nonbinary()
        return spoken(f"{first} {self.fake.last_name()}") or self.name()

    def date(self) -> str:
        day, month, year = self.rng.randint(1, 28), self.rng.choice(MONTHS), self.rng.randint(1700, 2099)
        return self.rng.choice([f"{month} {ordinal_words(day)}", f"the {ordinal_words(day)} of {month}",
                                f"{month} {ordinal_words(day)} {year_words(year)}", f"{month} {year_words(year)}"])

    def time(self) -> str:
        hour, minute = self.rng.randint(1, 12), self.rng.choice([0, 5, 10, 15, 20, 30, 45, 50, self.rng.randint(1, 59)])
        if minute == 0:
            return f"{number_words(hour)} o'clock"
        return f"{number_words(hour)} {'oh ' if minute < 10 else ''}{number_words(minute)}"

    def sentence(self) -> str:
        pick = self.rng.choice
        templates = [
            lambda: f"{self.name()} lives in {self.place()}",
            lambda: f"the flight from {self.place()} to {self.place()} leaves at {self.time()}",
            lambda: f"we met {self.name()} in {self.place()} on {pick(WEEKDAYS)}",
            lambda: f"the meeting is on {self.date()} at {self.time()}",
            lambda: f"she was born on {self.date()}",
            lambda: f"it is {self.number()} {pick(self.UNITS)} from {self.place()}",
            lambda: f"the price went up by {self.number()} {pick(self.UNITS)} in {year_words(self.rng.randint(1900, 2099))}",
            lambda: f"call {self.name()} at {' '.join(number_words(int(d)) for d in str(self.rng.randrange(10**6, 10**7)))}",
            lambda: f"the total is {self.number()} dollars and {number_words(self.rng.randint(1, 99))} cents",
            lambda: f"the {ordinal_words(self.rng.randint(1, 99))} quarterly report shows {self.number()} {pick(self.UNITS)}",
            lambda: f"{self.name()} moved to {self.place()} in {year_words(self.rng.randint(1800, 2099))}",
            lambda: f"about {self.number()} {pick(self.UNITS)} were counted in {self.place()} last {pick(MONTHS)}",
            lambda: f"room {number_words(self.rng.randint(1, 999))} is on the {ordinal_words(self.rng.randint(1, 40))} floor",
            lambda: f"{self.name()} and {self.name()} arrived in {self.place()} at {self.time()}",
        ]
        return " ".join(pick(templates)().split())


def word_sequence(rng: random.Random, words: list[str], cumulative_weights: list[float]) -> str:
    return " ".join(rng.choices(words, cum_weights=cumulative_weights, k=rng.randint(3, 10)))


# ---------------------------------------------------------------- the sets

def training_texts(count: int, seed: int, templates: list[str], exclude: set[str] = frozenset()) -> list[str]:
    """`count` training texts: WordNet's examples (all of them, shuffled, up to 55%), then the
    template sentences given (15%), facts (15%) and frequency-drawn word sequences (the rest)."""
    rng = random.Random(seed)
    examples = [t for t in wordnet_examples() if t not in exclude]
    rng.shuffle(examples)
    texts = examples[:int(0.55 * count)]
    texts += [t for t in templates if t not in exclude][:int(0.15 * count)]
    facts = FactMaker(seed)
    texts += [facts.sentence() for _ in range(int(0.15 * count))]
    words, frequencies = frequent_words()
    # Flattened frequencies: rare words are heard too, common ones still most.
    cumulative = list(itertools.accumulate(f ** 0.4 for f in frequencies))
    while len(texts) < count:
        texts.append(word_sequence(rng, words, cumulative))
    rng.shuffle(texts)
    return texts


def evaluation_texts(count: int, seed: int) -> list[str]:
    """`count` fortune sentences (another source than any training text)."""
    sentences = fortune_sentences()
    return random.Random(seed).sample(sentences, count)
