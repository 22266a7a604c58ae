"""The studio's class and guidance controls on a shipped class-conditional image model."""

from helpers import metric, open_app

IMAGES = "app_pages/image_trajectories.py"


def test_image_page_draws_chosen_classes_with_guidance_and_counts_both_evaluations(
    monkeypatch,
):
    monkeypatch.delenv("ECNF_CHECKPOINTS_DIR", raising=False)
    at = open_app(IMAGES)
    at.selectbox(key="img_checkpoint").set_value("images/digits_unet_fm_cond").run()
    assert not at.exception, at.exception
    classes = at.multiselect(key="img_classes")
    assert classes.value == list(range(10))  # every digit in turn
    assert metric(at, "NFE") == "40"  # rk4, 10 steps, w = 1: one evaluation per call
    at.slider(key="img_guidance").set_value(2.5).run()
    assert not at.exception, at.exception
    assert metric(at, "NFE") == "80"  # conditional and unconditional, both counted
    at.multiselect(key="img_classes").set_value([3]).run()
    assert not at.exception and not at.error
    assert len(at.image) == 2
    at.slider(key="img_guidance").set_value(0.0).run()
    assert metric(at, "NFE") == "40"  # w = 0 is the unconditional model alone
    # an unconditional model offers no class controls
    at.selectbox(key="img_checkpoint").set_value("images/digits_unet_fm").run()
    assert not at.exception, at.exception
    assert not [m for m in at.multiselect if m.key == "img_classes"]
