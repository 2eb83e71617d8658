"""Against the memorised second pass: a sentence seen before comes back with some of its tokens deleted, on both sides.

    python benchmarks/repeat_deletion.py --train wn3k/train.txt --steps 460 --seeds 42,43 --rates 0,0.15

The default (SmolLM2 reading and writing its own sentences) trains `--steps` phase-1 steps of 16 on `--train`; from
its second pass over the data on (the steps after one epoch), each batch has every real token deleted with
probability `--rates` from the encoder's input AND from the decoder's target (the survivors move left, the end token
follows them), so no sequence repeats exactly and none can be memorised as such. `--phase1-denoise` deletes from the
encoder's input only, a different task. This is a screen of a lever that is not in `vae finetune`: the deletion is
patched into the training loop's batch stream here (it needs one tokenizer on both sides, and `vae`'s
default `--encoder decoder` has one). Each (rate, seed) trains in a fresh process, one after the other, and is
evaluated as `vae evaluate --iw-samples 1 --samples 20` on the first `--limit` sentences of `--test`.
Rate 0 is the default of the time it was measured (without `--vocab-bias`, which came after).
"""

from __future__ import annotations

from lever_screen import arguments, table, train_and_evaluate  # benchmarks/ is on sys.path when a benchmark runs as a script


def patch(rate: float, seed: int) -> None:
    """From the second pass on, each batch loses `rate` of its tokens on both sides (the lever; rate 0: the default)."""
    import torch

    import vaecli.training.trainer as trainer

    plain_stream = trainer.batch_stream

    def batch_stream(run, phase, start_step):
        model, per_epoch = run.model, -(-len(run.train_data) // run.cfg.batch_size)
        if rate > 0 and not model.eos_id == model.pad_id == model.input_pad_id:
            raise SystemExit("this screen rebuilds the target as the kept input + end token, with end = pad")
        protected = [int(t) for t in model.tokenizer.all_special_ids]
        generator = torch.Generator().manual_seed(seed + 7)
        for step, batch in enumerate(plain_stream(run, phase, start_step), start=start_step):
            if rate > 0 and step >= per_epoch:
                ids, mask = trainer.delete_tokens(batch["input_ids"], batch["attention_mask"], rate, model.input_pad_id, protected, generator)
                rows = ids.shape[0]
                target_mask = torch.cat([mask, torch.zeros(rows, 1, dtype=mask.dtype)], 1)
                target_mask[torch.arange(rows), mask.sum(1)] = 1
                batch = {**batch, "input_ids": ids, "attention_mask": mask, "target_mask": target_mask,
                         "target_ids": torch.cat([ids, torch.full((rows, 1), model.eos_id, dtype=ids.dtype)], 1)}
            yield batch

    trainer.batch_stream = batch_stream


def main() -> None:
    args = arguments(__doc__, "rates", "0,0.15")
    if args.child:
        patch(float(args.child[0]), int(args.child[1]))
        train_and_evaluate(args, vocab_bias=False)  # the default of the time it was measured
        return
    table(__file__, args, "deletion on repeats", lambda rate: f"{rate} (the default)" if float(rate) == 0 else rate)


if __name__ == "__main__":
    main()
