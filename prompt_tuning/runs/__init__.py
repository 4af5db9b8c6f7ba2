"""Runs: what the entry points call once gin is parsed — train, eval, infer — and what they share.

May import every library layer (data, training, checkpoints, model, parallel, config); only the
entry points import it.
  train_loop.py      train(): restore, tune, evaluate, checkpoint, keep the best prompt
  settings.py        the train loop's setting records (dataset, restore, save, evaluation)
  eval_infer.py      run_eval() / run_infer(): prompt files on a frozen checkpoint -> JSONL
  evaluator.py       Evaluator: a task's examples, loss, decoding / scoring and metrics
  ensemble.py        K prompts as one prompt table, majority vote (the paper's Table 3)
  label_check.py     a warning when the targets need ids the frozen output layer cannot tell apart
  backbone.py        the frozen backbone on its mesh, the first prompt, prompt files
  metrics_writer.py  metrics.jsonl, TensorBoard, the progress bar
  configurables.py   the library's functions registered with gin
  launch.py          what the command-line flags ask of the data package before a run
  peft_export.py     prompts as PEFT adapters, the model's sizes read from the run or checkpoint
  prompt_sources.py  PROMPT_FILE of eval / infer: a run's MODEL_DIR, the prompt length the files hold
  methods.py         the prompt methods in a run: what each cannot serve, multi-task task ids,
                     the step's objective and regularizer, the prompt files they export
"""
