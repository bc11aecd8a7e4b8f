"""The titanic routes as the docs page shows them (``fleet.openapi``): gateway paths, examples that work."""

from fleet.openapi import Operation, Tag

PASSENGERS = [  # the first two passengers of the Kaggle test set the seed predicts
    {"PassengerId": 892, "Pclass": 3, "Name": "Kelly, Mr. James", "Sex": "male", "Age": 34.5, "SibSp": 0,
     "Parch": 0, "Ticket": "330911", "Fare": 7.8292, "Embarked": "Q"},
    {"PassengerId": 893, "Pclass": 3, "Name": "Wilkes, Mrs. James (Ellen Needs)", "Sex": "female",
     "Age": 47.0, "SibSp": 1, "Parch": 0, "Ticket": "363272", "Fare": 7.0, "Embarked": "S"},
]
TAG: Tag = {"name": "titanic", "description": "Passenger survival (seed 004: `POST /predict`, "
            "`PUT /run-pipeline`)"}
OPERATIONS: dict[str, Operation] = {
    "POST /titanic/predict": {
        "tag": "titanic", "summary": "Survival of a list of passengers",
        "description": "Up to 1,000 passengers; missing fields are imputed as in training. Answers "
                       "keep their order.",
        "example": PASSENGERS,
        "answer": {"predictions": [0, 1], "probabilities": [0.11, 0.62], "model_version": "v1"}},
    "PUT /titanic/run-pipeline": {
        "tag": "titanic", "summary": "Re-run the training pipeline and reload if it passes the gate",
        "description": "Trains vN+1 in a subprocess and adopts it on every worker if its accuracy is "
                       "not worse than the stable's. Admin token required.",
        "admin": True},
}
