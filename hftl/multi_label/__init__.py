"""Multi-label classification (`--problem_type multi_label_classification`): each example has a set of labels, each
a yes / no decision with its own threshold.

- `arguments`: the flags (`ProblemArguments`) and the flags a multi-label run refuses;
- `hftl.data.multi_labels`: label sets read, checked and encoded multi-hot;
- `metrics`: the loss (binary cross-entropy on the logits) and the metrics (micro / macro / weighted / samples F1 ...);
- `thresholds`: per-label thresholds tuned on validation and folded into the classifier's bias;
- `evaluation`: metrics, report and predictions CSV of a split; `card`: the model card's section.
"""
