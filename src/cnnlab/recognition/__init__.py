"""Reading real handwriting: any picture -> the 28x28 digit a network expects (ink, paper, preprocess),
"is it a digit at all?" (reject, calibration), whole numbers (pieces, segment), whole-picture models
(picture), and the drawing page with its API (serve/)."""
