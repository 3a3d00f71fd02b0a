"""Everyday English sentences for the demo model: ~1,200 common words plus spoken numbers.

Sentences come from templates over word lists grouped by part of speech, so that every word
appears in many contexts; a share of them are shuffled word sequences so that the model also
hears words in orders the templates never produce. Deterministic for a seed.
"""

from __future__ import annotations

import random

PEOPLE = """man woman child boy girl baby friend teacher doctor nurse student driver farmer
worker police officer king queen mother father sister brother son daughter uncle aunt cousin
husband wife parent neighbor guest captain pilot cook waiter manager boss artist singer player
writer lawyer judge soldier scientist engineer builder baker dentist clerk customer visitor
stranger child person leader member partner owner reader speaker guard""".split()

THINGS = """book car table chair door window house bed phone computer letter paper pen pencil
bag box bottle cup glass plate bowl spoon fork knife key watch clock lamp picture map ticket
coat shirt dress hat shoe sock glove jacket ring card camera radio television bike bus train
plane boat ship truck road bridge wall floor roof garden tree flower plant leaf stone rock
river lake sea mountain hill island field forest beach sky sun moon star cloud rain snow wind
fire water air light sound song game ball toy gift present question answer idea story word
name number color line page letter list plan problem reason result message email photo
machine engine wheel button screen file report meeting lesson class test exam job project
idea price bill coin wallet basket blanket pillow towel soap brush mirror sofa shelf drawer
fridge oven sink kettle pot pan jar candle umbrella notebook envelope stamp package pocket
ladder rope tool hammer nail screw bucket fence gate tent flag drum guitar piano violin""".split()

PLACES = """school house home office shop store market bank hospital church library museum
park station airport hotel restaurant kitchen bedroom bathroom garden city town village
country street corner farm factory theater cinema studio classroom hall stadium zoo harbor
island beach lake river bridge mountain center building apartment cafe bakery pharmacy
playground garage yard square""".split()

FOOD = """apple banana orange lemon grape cherry peach pear melon strawberry bread butter cheese
milk egg rice soup salad meat chicken fish beef pork potato tomato onion carrot bean pepper
sugar salt honey cake cookie pie chocolate candy tea coffee juice water pizza sandwich
noodle cereal yogurt cream sauce corn""".split()

ANIMALS = """dog cat horse cow pig sheep goat chicken duck bird fish rabbit mouse bear lion tiger
elephant monkey snake frog bee horse wolf fox deer whale dolphin shark owl eagle parrot turtle
spider butterfly camel zebra giraffe donkey""".split()

IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
    "foot": "feet", "tooth": "teeth", "knife": "knives", "leaf": "leaves", "wife": "wives",
    "sheep": "sheep", "fish": "fish", "deer": "deer", "police": "police", "shelf": "shelves",
    "wolf": "wolves", "potato": "potatoes", "tomato": "tomatoes",
}

# base, past
VERBS = """see saw|make made|take took|give gave|find found|buy bought|bring brought|sell sold
|send sent|read read|write wrote|eat ate|drink drank|cook cooked|clean cleaned|wash washed
|open opened|close closed|fix fixed|build built|break broke|carry carried|hold held|keep kept
|leave left|lose lost|move moved|need needed|want wanted|like liked|love loved|hate hated
|help helped|call called|visit visited|watch watched|hear heard|know knew|meet met|pay paid
|paint painted|draw drew|catch caught|throw threw|push pushed|pull pulled|drop dropped
|pick picked|fill filled|check checked|count counted|choose chose|order ordered|use used
|borrow borrowed|lend lent|finish finished|start started|forget forgot|remember remembered
|follow followed|find found|show showed|teach taught|ask asked|answer answered|tell told
|cut cut|hit hit|put put|wear wore|hide hid|share shared|enjoy enjoyed|miss missed
|try tried|touch touched|test tested|change changed|plant planted|feed fed|wrap wrapped
|count counted|mix mixed|boil boiled|fry fried|bake baked|cover covered|print printed
|save saved|study studied|drive drove|ride rode|lift lifted|pack packed|sign signed""".split("|")
VERBS = [tuple(pair.split()) for pair in VERBS]

INTRANSITIVE = """go went|come came|run ran|walk walked|sleep slept|sit sat|stand stood|swim swam
|fly flew|sing sang|dance danced|laugh laughed|cry cried|smile smiled|wait waited|work worked
|play played|rest rested|jump jumped|fall fell|arrive arrived|travel traveled|listen listened
|speak spoke|talk talked|shout shouted|climb climbed|stay stayed|return returned|win won
|agree agreed|begin began|grow grew|live lived|breathe breathed|relax relaxed|hurry hurried
|wake woke|cough coughed|knock knocked|smell smelled|shine shone|rain rained""".split("|")
INTRANSITIVE = [tuple(pair.split()) for pair in INTRANSITIVE]

ADJECTIVES = """big small little large tall short long old new young good bad great nice fine
happy sad angry tired hungry thirsty busy free full empty hot cold warm cool wet dry clean
dirty quiet loud fast slow early late easy hard soft heavy light dark bright rich poor strong
weak kind friendly funny serious strange simple important beautiful pretty ugly cheap
expensive safe dangerous sick healthy fresh sweet sour bitter delicious ready sure wrong
right true real whole different same special famous modern ancient open closed broken
wooden golden round square flat deep wide narrow thick thin sharp smooth rough red blue
green yellow black white brown gray pink purple orange silver careful brave clever calm
polite lazy proud quick gentle wild quiet noisy lucky lonely lovely huge tiny tidy messy
sunny rainy windy cloudy foggy shiny useful honest""".split()

ADVERBS = """quickly slowly carefully quietly loudly happily sadly easily always never often
sometimes usually rarely already soon now then today tomorrow yesterday tonight here there
again together almost really very too also early late later finally suddenly gently badly
well""".split()

TIMES = """in the morning|in the afternoon|in the evening|at night|at noon|at midnight|last
night|last week|next week|last year|next year|this morning|this evening|every day|every
week|on monday|on tuesday|on wednesday|on thursday|on friday|on saturday|on sunday|in
january|in february|in march|in april|in may|in june|in july|in august|in september|in
october|in november|in december|in the spring|in the summer|in the autumn|in the winter|on
the weekend|after lunch|before dinner|after breakfast|right now|for a while|for an hour|a
minute ago|two days ago|a long time ago""".replace("\n", " ").split("|")

PREPOSITIONS = """in on under over near behind beside between above below inside outside
around across along against toward through into onto past""".split()

SUBJECTS = "i you he she we they".split()
OBJECTS = {"i": "me", "you": "you", "he": "him", "she": "her", "we": "us", "they": "them"}
POSSESSIVES = "my your his her our their".split()
DETERMINERS = ["the", "a", "this", "that", "my", "your", "his", "her", "our", "their", "every",
               "one", "another", "each", "no"]
PLURAL_DETERMINERS = ["the", "some", "these", "those", "many", "a few", "all the", "my", "your",
                      "our", "their", "two", "three", "several", "no", "more"]
MODALS = ["will", "can", "could", "should", "would", "must", "might", "may"]
NAMES = """john mary peter susan david anna james emma tom lucy paul sarah michael kate robert
laura daniel alice george helen""".split()

PHRASES = """good morning|good afternoon|good evening|good night|thank you very much|thanks a
lot|you are welcome|excuse me|i am sorry|see you later|see you tomorrow|nice to meet you|how
are you|i am fine thank you|what is your name|my name is|where do you live|what time is it|how
much does it cost|can you help me|i do not understand|please speak more slowly|could you say
that again|have a nice day|happy birthday|good luck|welcome home|let us go|wait a minute|take
care|no problem|of course|i think so|i do not know|why not|what happened|are you ready|it
does not matter|that sounds good|let me think|call me later|be careful|hurry up|sit down
please|come in please|turn left|turn right|go straight ahead|how was your day|what do you
want|where are you going|what are you doing|who is that|which one do you like|when does the
train leave|how far is it|is it true|i hope so|i agree with you|that is a good idea|it is
very cold today|the weather is nice|it is going to rain|the shop is closed|the door is
open|my phone is broken|i lost my keys|i am hungry|i am tired|i need some help|we are
late|they are here|he is not at home|she is at work|it was a long day|dinner is
ready|breakfast is ready|the water is hot|the room is clean|the answer is yes|the answer is
no|maybe next time|just a moment|not yet|me too|neither do i|so do i""".replace("\n", " ").split("|")

CONNECTORS = ["and", "but", "because", "so", "when", "before", "after", "while", "if", "although",
              "until", "since", "or"]
QUESTION_WORDS = ["what", "where", "when", "why", "how", "who", "which"]

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINALS = """first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth
last next""".split()


def number_words(n: int) -> str:
    """0 <= n < 1,000,000 spoken the American way ("three hundred and five" -> without "and")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class SentenceMaker:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.nouns = sorted(set(THINGS + FOOD + ANIMALS + PEOPLE))

    def pick(self, items):
        return self.rng.choice(items)

    def number(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return number_words(self.rng.randint(2, 20))
        if r < 0.8:
            return number_words(self.rng.randint(21, 99))
        if r < 0.95:
            return number_words(self.rng.randint(100, 999))
        return number_words(self.rng.randint(1000, 9999))

    def noun_phrase(self, nouns=None) -> str:
        noun = self.pick(nouns or self.nouns)
        adjective = self.pick(ADJECTIVES) + " " if self.rng.random() < 0.4 else ""
        r = self.rng.random()
        if r < 0.3:
            words = adjective + plural(noun)
            count = self.number() if self.rng.random() < 0.4 else self.pick(PLURAL_DETERMINERS)
            return f"{count} {words}"
        determiner = self.pick(DETERMINERS)
        if determiner == "a":
            determiner = _article(adjective or noun)
        return f"{determiner} {adjective}{noun}"

    def subject(self) -> tuple[str, bool]:
        """(words, is_third_person_singular)"""
        r = self.rng.random()
        if r < 0.45:
            pronoun = self.pick(SUBJECTS)
            return pronoun, pronoun in ("he", "she")
        if r < 0.6:
            return self.pick(NAMES), True
        return self.noun_phrase(PEOPLE + ANIMALS), False

    def place(self) -> str:
        return f"{self.pick(PREPOSITIONS)} the {self.pick(PLACES + THINGS)}"

    def time(self) -> str:
        return self.pick(TIMES) if self.rng.random() < 0.7 else self.pick(ADVERBS)

    def clause(self) -> str:
        subject, _ = self.subject()
        verb, past = self.pick(VERBS)
        intransitive, intransitive_past = self.pick(INTRANSITIVE)
        obj = self.noun_phrase()
        templates = [
            lambda: f"{subject} {past} {obj} {self.time()}",
            lambda: f"{subject} {self.pick(MODALS)} {verb} {obj}",
            lambda: f"{subject} did not {verb} {obj} {self.place()}",
            lambda: f"{subject} {self.pick(MODALS)} not {intransitive} {self.time()}",
            lambda: f"{subject} {intransitive_past} {self.place()} {self.time()}",
            lambda: f"{subject} wanted to {verb} {obj}",
            lambda: f"{subject} {self.pick(['is', 'was'])} going to {verb} {obj}",
            lambda: f"{subject} {past} {obj} for {OBJECTS.get(self.pick(SUBJECTS))}",
            lambda: f"{subject} {intransitive_past} {self.pick(ADVERBS)}",
            lambda: f"{subject} {self.pick(['seemed', 'looked', 'felt'])} very {self.pick(ADJECTIVES)}",
        ]
        return self.pick(templates)()

    def question(self) -> str:
        verb, _ = self.pick(VERBS)
        templates = [
            lambda: f"did you {verb} {self.noun_phrase()}",
            lambda: f"{self.pick(QUESTION_WORDS)} did {self.pick(SUBJECTS)} {verb} {self.noun_phrase()}",
            lambda: f"how many {plural(self.pick(self.nouns))} do you {self.pick(['need', 'want', 'have', 'see'])}",
            lambda: f"where is the {self.pick(self.nouns + PLACES)}",
            lambda: f"can {self.pick(SUBJECTS)} {verb} {self.noun_phrase()} {self.time()}",
            lambda: f"is the {self.pick(self.nouns)} {self.pick(ADJECTIVES)}",
            lambda: f"{self.pick(QUESTION_WORDS)} {self.pick(MODALS)} we {self.pick(INTRANSITIVE)[0]} {self.time()}",
        ]
        return self.pick(templates)()

    def description(self) -> str:
        templates = [
            lambda: f"the {self.pick(self.nouns)} is {self.pick(ADJECTIVES)} and {self.pick(ADJECTIVES)}",
            lambda: f"there are {self.number()} {plural(self.pick(self.nouns))} {self.place()}",
            lambda: f"there is {self.noun_phrase()} {self.place()}",
            lambda: f"it costs {self.number()} dollars",
            lambda: f"the {self.pick(ORDINALS)} {self.pick(THINGS)} is {self.pick(ADJECTIVES)}",
            lambda: f"i have {self.number()} {plural(self.pick(self.nouns))} and {self.number()} {plural(self.pick(self.nouns))}",
            lambda: f"the meeting starts at {number_words(self.rng.randint(1, 12))} {self.pick(['o clock', 'thirty', 'fifteen', 'forty five'])}",
            lambda: f"room number {self.number()} is on the {self.pick(ORDINALS)} floor",
            lambda: f"the {self.pick(PLACES)} is {self.number()} miles away",
        ]
        return self.pick(templates)()

    def shuffled(self, pool: list[str]) -> str:
        return " ".join(self.pick(pool) for _ in range(self.rng.randint(4, 9)))

    def sentence(self, pool: list[str]) -> str:
        r = self.rng.random()
        if r < 0.38:
            text = self.clause()
            if self.rng.random() < 0.25:
                text += f" {self.pick(CONNECTORS)} {self.clause()}"
        elif r < 0.55:
            text = self.question()
        elif r < 0.75:
            text = self.description()
        elif r < 0.85:
            text = self.pick(PHRASES)
            if self.rng.random() < 0.5:
                text += " " + self.clause()
        else:
            text = self.shuffled(pool)
        return " ".join(text.split())


def vocabulary() -> list[str]:
    """Every word the generator can produce."""
    words: set[str] = set()
    for group in (PEOPLE, THINGS, PLACES, FOOD, ANIMALS, ADJECTIVES, ADVERBS, PREPOSITIONS, SUBJECTS,
                  POSSESSIVES, NAMES, CONNECTORS, QUESTION_WORDS, ONES, TENS[2:], ORDINALS,
                  list(OBJECTS.values()), MODALS):
        words.update(group)
    for noun in PEOPLE + THINGS + FOOD + ANIMALS:
        words.add(plural(noun))
    for pair in VERBS + INTRANSITIVE:
        words.update(pair)
    for group in (TIMES, PHRASES, DETERMINERS, PLURAL_DETERMINERS):
        for phrase in group:
            words.update(phrase.split())
    words.update("hundred thousand dollars miles away floor room number clock o is was are did do does "
                 "not to for going very there it costs starts at and an has have seemed looked many "
                 "wanted meeting felt".split())
    return sorted(words)


def sentences(count: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """`count` distinct sentences, none of them in `exclude`."""
    maker = SentenceMaker(seed)
    pool = vocabulary()
    out: list[str] = []
    seen = set(exclude)
    while len(out) < count:
        text = maker.sentence(pool)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
