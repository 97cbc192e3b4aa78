#!/usr/bin/env python3
"""Writes data/haystack/haystack.txt: English-like filler prose from a small seeded grammar.

The text is generated here from our own word lists and sentence templates, so it carries no
third-party copyright. It only has to look like ordinary prose to a byte-level model: varied
sentences, punctuation, capitals, an occasional number. It never mentions pass keys or
"the value of key", so a needle is the only place those phrases occur.
"""

import argparse
import random

NAMES = ["Anna", "Tomas", "Mira", "Joel", "Edith", "Oskar", "Lena", "Victor", "Ruth", "Hugo",
         "Clara", "Felix", "Nora", "Arthur", "Ida", "Simon", "Greta", "Walter", "Alma", "Bruno"]
PLACES = ["the old mill", "the harbor", "the market square", "the north road", "the orchard",
          "the lighthouse", "the village school", "the river bank", "the stone bridge",
          "the bakery", "the station", "the library", "the hill farm", "the chapel",
          "the forest path", "the town hall", "the quarry", "the meadow", "the inn", "the pier"]
THINGS = ["a basket of apples", "an old map", "a wooden box", "a letter", "a lantern",
          "a loaf of bread", "a brass key", "a wool blanket", "a small boat", "a fishing net",
          "a bundle of firewood", "a jar of honey", "a pair of boots", "a clock", "a violin",
          "a book of songs", "a garden spade", "a bag of flour", "a kite", "a painted cup"]
ADJ = ["quiet", "cold", "bright", "grey", "warm", "windy", "narrow", "busy", "empty", "green",
       "long", "muddy", "calm", "dark", "golden", "steep", "small", "crowded", "gentle", "late"]
TIMES = ["In the morning", "At dawn", "Late in the evening", "Before noon", "After supper",
         "On Sunday", "Every winter", "That autumn", "During the storm", "Once the rain stopped",
         "At the end of the week", "When the bells rang", "In early spring", "Some days later"]
VERBS_PAST = ["walked to", "hurried toward", "returned from", "looked for", "wandered past",
              "waited near", "rode along", "painted", "cleaned", "visited", "left", "reached"]
WEATHER = ["the wind came down from the hills", "a light rain fell over the roofs",
           "the sky cleared and the sun came out", "fog rolled in from the sea",
           "snow covered the fields", "the air smelled of smoke and pine",
           "thunder rumbled far away", "the river rose after the long rain"]
FEELINGS = ["glad", "tired", "curious", "worried", "patient", "cheerful", "restless", "proud"]
REMARKS = ["Nobody could remember a year like it.", "It was the kind of day people talk about.",
           "The dogs barked and then fell silent.", "Children ran between the houses.",
           "The bread was still warm.", "Somewhere a door banged in the wind.",
           "The cart needed a new wheel.", "Smoke rose straight up from every chimney.",
           "The cows stood close together under the trees.", "A boat drifted past slowly."]


def sentence(rng):
    n, p, t = rng.choice(NAMES), rng.choice(PLACES), rng.choice(THINGS)
    forms = [
        lambda: f"{rng.choice(TIMES)}, {n} {rng.choice(VERBS_PAST)} {p}.",
        lambda: f"{n} carried {t} to {p} and set it down by the door.",
        lambda: f"The road to {p} was {rng.choice(ADJ)} and {rng.choice(ADJ)}.",
        lambda: f"{rng.choice(TIMES)}, {rng.choice(WEATHER)}.",
        lambda: f"{n} felt {rng.choice(FEELINGS)} and said nothing for a while.",
        lambda: f"\"Have you seen {t}?\" asked {n}.",
        lambda: f"{n} and {rng.choice(NAMES)} talked about {p} until it grew {rng.choice(ADJ)}.",
        lambda: f"It took {rng.randint(2, 40)} minutes to walk from {p} to {rng.choice(PLACES)}.",
        lambda: rng.choice(REMARKS),
        lambda: f"Near {p} there was {t}, {rng.choice(ADJ)} with age.",
        lambda: f"{n} had lived near {p} for {rng.randint(2, 60)} years.",
        lambda: f"Some said {rng.choice(WEATHER)}, but {n} did not believe it.",
    ]
    return rng.choice(forms)()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/haystack/haystack.txt")
    ap.add_argument("--bytes", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    paragraphs, size = [], 0
    while size < args.bytes:
        para = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(para)
        size += len(para) + 1
    with open(args.out, "w", encoding="ascii") as f:
        f.write("\n".join(paragraphs) + "\n")
    print(f"wrote {args.out}: {size} bytes, {len(paragraphs)} paragraphs")


if __name__ == "__main__":
    main()
