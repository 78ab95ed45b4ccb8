"""The Pictures callback writes every picture, final ones, to the run directory and to TensorBoard."""
import pytorch_lightning as pl
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import versions, tiny
from plantnseek.callbacks import Pruning, RunSummary
from plantnseek.callbacks.pictures import Pictures, draw_run_pictures


def test_pictures_of_a_multishot_run_are_the_final_ones_and_reach_tensorboard(tmp_path):
    model, dm = tiny("circle", depth=4)
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=2, pre_epochs=1, post_epochs=1)
    pictures = Pictures()
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(tmp_path), enable_checkpointing=False,
                         callbacks=[pruning, RunSummary(verbose=False), pictures], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    run = versions(tmp_path / "lightning_logs")[0]
    names = ["task.png", "masks.png", "scores_level1.png", "scores_level2.png"]
    for name in names:
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # drawn inline from the finished run: the same pictures (the helper drew the final masks and scores)
    inline = tmp_path / "inline"
    inline.mkdir()
    draw_run_pictures(str(inline), model.run, *dm.split("test"), pruning)
    for name in names[1:]:
        assert (inline / name).read_bytes() == (run / name).read_bytes(), name
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert {"pictures/task", "pictures/masks", "pictures/scores"} <= set(tags)
    assert [e.step for e in events.Images("pictures/scores")] == [1, 2]
    assert events.Images("pictures/masks")[0].encoded_image_string == (run / "masks.png").read_bytes()
