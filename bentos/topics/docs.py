"""The topics routes as the docs page shows them (``fleet.openapi``): gateway paths, examples that work."""

from bentos.topics.schemas import TopicRequest
from fleet.openapi import Operation, Tag

SENTENCE = "Mapa aprende un nuevo lenguaje"  # the seed's own example
TAG: Tag = {"name": "topics", "description": "Short text → subject, a pretrained transformer encoder and a "
            "trained head (seed 003: `GET /classify?sentence=`)"}
OPERATIONS: dict[str, Operation] = {
    "GET /topics/classify": {
        "tag": "topics", "summary": "The subject of a sentence (the seed's query form)",
        "description": "`top_k` subjects with their scores, best first.",
        "parameters": {"sentence": SENTENCE, "top_k": 3}},
    "POST /topics/classify": {
        "tag": "topics", "summary": "The subject of a sentence (JSON body)",
        "description": "The same answer as the GET, for sentences that do not fit a URL (512 characters).",
        "example": {"sentence": SENTENCE, "top_k": 3},
        "answer": [{"label": "Languages and Literature", "score": 0.82},
                   {"label": "Education", "score": 0.05}, {"label": "Arts", "score": 0.03}],
        "request_schema": TopicRequest.model_json_schema()},
}
