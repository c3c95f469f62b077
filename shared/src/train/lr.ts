// Learning-rate defaults, one place for every command, the server config and the site daemon.
/** The HF recipe's Adam lr for fine-tuning pretrained SAM weights (any downloaded SAM folder). */
export const SAM_FINETUNE_LR = 1e-5;
/** The built-in fedsam-tiny's own: its decoder starts from random weights, so it needs a far larger step. */
export const TINY_MODEL_LR = 3e-3;
