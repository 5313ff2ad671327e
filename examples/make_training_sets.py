"""Write the demo's small training sets: examples/train_{politics,stars,sentiment,emotion}.jsonl.

    python examples/make_training_sets.py [--output examples] [--seed 0]

Synthetic sentences built from templates and word lists written for this project (no corpus
text), with a real, learnable signal: sentiment and emotion words, star-rating phrases in
Chinese, political topics with a polarity phrase. About 5% of the labels are flipped so that
the task is not trivially perfect. Deterministic for a given seed.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TOPIC_WORDS = {
    "democracy": ["the election", "voting rights", "our democracy", "the ballot count", "the electoral roll"],
    "economy": ["the economy", "the ringgit", "inflation", "the cost of living", "fuel subsidies"],
    "race": ["race relations", "ethnic unity", "racial quotas", "relations between communities"],
    "leadership": ["the prime minister", "the party president", "the cabinet", "the opposition leader"],
    "development": ["the new highway project", "rural development", "the rail link", "public housing"],
    "corruption": ["corruption", "the bribery case", "graft in the ministry", "the kickback scandal"],
    "instability": ["the coalition crisis", "party hopping", "political instability", "the snap election talk"],
    "safety": ["public safety", "crime in the city", "the police", "road safety"],
    "administration": ["the civil service", "the land office", "government paperwork", "the federal agencies"],
    "education": ["our schools", "university fees", "the exam results", "teacher shortages"],
    "religion": ["religious harmony", "the mosque committee", "freedom of worship", "the temple festival"],
    "environment": ["the floods", "deforestation", "air pollution", "the river clean-up"],
}
POLARITY = {
    "negative": ["is getting worse", "is a disaster", "has failed us", "is a total mess", "makes me angry"],
    "neutral": ["was discussed in parliament today", "is on the agenda", "was mentioned in the report",
                "is being reviewed this week"],
    "positive": ["is improving nicely", "is a real success", "makes me proud", "is getting better",
                 "deserves praise"],
}
OPENERS = ["", "", "honestly ", "i think ", "news: ", "so ", "breaking: ", "people say "]

STAR_PHRASES = {
    1: ["太差了", "非常失望", "再也不会来了", "服务态度恶劣", "菜都是凉的", "房间很脏", "完全不推荐"],
    2: ["不太满意", "有点失望", "送餐太慢了", "味道偏咸", "设施比较旧", "前台不太热情"],
    3: ["一般般", "还可以吧", "中规中矩", "没什么特别的", "价格一般", "凑合"],
    4: ["挺好的", "比较满意", "味道不错", "房间干净", "服务还不错", "送得挺快"],
    5: ["非常好", "强烈推荐", "超级满意", "完美", "五星好评", "下次还来", "服务特别热情"],
}
STAR_CONTEXT = ["外卖", "酒店", "早餐", "这家店", "房间", "位置在市中心", "点了两份", "周末入住", ""]

SENTIMENT_SUBJECTS = ["the movie", "this phone", "the new album", "our trip", "the service", "the match last night",
                      "my coffee", "the update", "this book", "the concert", "the hotel", "the new episode"]
SENTIMENT_WORDS = {
    1: ["amazing", "wonderful", "great", "fantastic", "delightful", "excellent", "brilliant", "lovely"],
    0: ["awful", "terrible", "boring", "disappointing", "horrible", "useless", "dreadful", "bad"],
}
SENTIMENT_TAILS = {
    1: ["loved it", "highly recommend", "made my day", "best one yet", "so happy", "😍", "👍"],
    0: ["waste of money", "never again", "so annoying", "what a letdown", "not worth it", "😡", "👎"],
}

EMOTION_WORDS = {
    "anger": ["furious", "so angry", "outraged", "fed up", "livid", "this makes my blood boil"],
    "fear": ["scared", "terrified", "anxious", "worried sick", "afraid", "nervous about it"],
    "joy": ["so happy", "delighted", "thrilled", "overjoyed", "having a blast", "pure joy"],
    "sadness": ["heartbroken", "so sad", "miserable", "in tears", "feeling down", "lonely tonight"],
    "surprise": ["shocked", "did not see that coming", "unbelievable", "totally stunned", "what a twist", "wow"],
}
EMOTION_CONTEXT = ["the exam results", "the news", "my flight", "the game", "work today", "the weather",
                   "my landlord", "the party", "this week", "the interview"]


def _maybe_decorate(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.1:
        return f"@friend{rng.randint(1, 99)} {text}"
    if roll < 0.2:
        return f"{text} https://example.com/p/{rng.randint(100, 999)}"
    return text


def politics_rows(rng: random.Random, n: int) -> list[dict]:
    topics = list(TOPIC_WORDS)
    classes = ["negative", "neutral", "positive"]
    rows = []
    for _ in range(n):
        row = {topic: "unknown" for topic in topics}
        parts = []
        for topic in rng.sample(topics, k=rng.choice([1, 1, 2])):
            polarity = rng.choice(classes)
            parts.append(f"{rng.choice(TOPIC_WORDS[topic])} {rng.choice(POLARITY[polarity])}")
            if rng.random() < 0.05:
                polarity = rng.choice(classes)
            row[topic] = polarity
        text = rng.choice(OPENERS) + " and ".join(parts)
        rows.append({"text": _maybe_decorate(rng, text), **row})
    return rows


def stars_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        star = rng.randint(1, 5)
        phrases = rng.sample(STAR_PHRASES[star], k=rng.choice([1, 2, 2, 3]))
        if rng.random() < 0.2:  # a phrase from a neighbouring rating, as real reviews mix them
            neighbour = min(5, max(1, star + rng.choice([-1, 1])))
            phrases.append(rng.choice(STAR_PHRASES[neighbour]))
        rng.shuffle(phrases)
        text = rng.choice(STAR_CONTEXT) + "，".join(phrases) + rng.choice(["", "。", "！", " 👍" if star > 3 else " 😞"])
        if rng.random() < 0.05:
            star = rng.randint(1, 5)
        rows.append({"text": text, "stars": star})
    return rows


def sentiment_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        subject, word = rng.choice(SENTIMENT_SUBJECTS), rng.choice(SENTIMENT_WORDS[label])
        template = rng.choice(["{s} was {w}", "{s} is {w}, {t}", "{t}. {s} was {w}", "wow {s} was {w} {t}",
                               "just saw {s}: {w}"])
        text = template.format(s=subject, w=word, t=rng.choice(SENTIMENT_TAILS[label]))
        if rng.random() < 0.05:
            label = 1 - label
        rows.append({"text": _maybe_decorate(rng, text), "label": ["negative", "positive"][label]})
    return rows


def emotion_rows(rng: random.Random, n: int) -> list[dict]:
    labels = list(EMOTION_WORDS)
    rows = []
    for _ in range(n):
        chosen = rng.sample(labels, k=1 if rng.random() < 0.8 else 2)
        words = [rng.choice(EMOTION_WORDS[label]) for label in chosen]
        text = rng.choice(["{w} about {c}", "{c}... {w}", "{w}! {c} again", "me after {c}: {w}"]).format(
            w=" and ".join(words), c=rng.choice(EMOTION_CONTEXT))
        if rng.random() < 0.05:
            chosen = [rng.choice(labels)]
        rows.append({"text": _maybe_decorate(rng, text), "emotions": sorted(chosen, key=labels.index)})
    return rows


SETS = {"politics": (politics_rows, 600), "stars": (stars_rows, 400), "sentiment": (sentiment_rows, 400),
        "emotion": (emotion_rows, 400)}


def write_all(output: Path, seed: int = 0) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, (task, (make, n)) in enumerate(SETS.items()):
        path = output / f"train_{task}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for row in make(random.Random(seed * 100 + i), n):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths[task] = path
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for task, path in write_all(args.output, args.seed).items():
        print(f"{task}: {path}")


if __name__ == "__main__":
    main()
