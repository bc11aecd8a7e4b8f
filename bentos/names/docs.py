"""The names routes as the docs page shows them (``fleet.openapi``): gateway paths, examples that work."""

from fleet.openapi import Operation, Tag

TAG: Tag = {"name": "names", "description": "Surname → nationality, a character-level PyTorch RNN "
            "(seed 000: `POST /get_prediction`, `GET /check_service`)"}
OPERATIONS: dict[str, Operation] = {
    "POST /names/get_prediction": {
        "tag": "names", "summary": "The likeliest nationalities of a surname",
        "description": "`n_predictions` answers (1 to the model's class count), most likely first, with "
                       "natural-log probabilities; `confident` is false when the top probability is under "
                       "0.7 (a surname common in many countries). The name needs a letter; 64 characters at "
                       "most.",
        "example": {"name": "Jordan", "n_predictions": 3},
        "answer": {"predictions": ["Hungarian", "Swedish", "Czech"],
                   "probabilities": [-0.46, -1.77, -2.41], "model_version": "v1", "confident": False}},
    "GET /names/check_service": {
        "tag": "names", "summary": "The seed's greeting, and which version answers",
        "description": "`{\"Message\": \"Hello world from service\"}` as in the seed, plus `model_version`."},
}
