"""ECNF studio: `streamlit run app.py`.

This file only routes: page config, the shared sidebar, and ``st.navigation`` over the
files in ``app_pages/``. Pages hold widgets and figures; every computation lives in ``ecnf``.
The folder is not called ``pages/``: Streamlit takes a ``pages/`` folder beside the main
script for a legacy multipage app until the first ``st.navigation`` call, so the first link
to a page after the server started opened with a "Page not found" dialog.
"""

from __future__ import annotations

import sys

import streamlit as st

from studio import PAGES, active_checkpoint, device_label, warm_up

#: How often (seconds) Python hands its interpreter lock between this server's threads. A
#: page's torch work (sampling, a likelihood) runs many small calls and must win the lock
#: back after each; at Python's default of 5 ms a neighbour drawing its page held each call
#: up so long that RK4 on 1000 points took seconds instead of milliseconds. (Training runs
#: have processes of their own: ``ecnf.background``.)
SWITCH_INTERVAL_S = 0.0005


def run() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    st.set_page_config(page_title="ECNF studio", layout="wide")
    pages = [
        st.Page(path, url_path=url_path, title=title, icon=icon, default=i == 0)
        for i, (path, url_path, title, icon) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    with st.sidebar:
        device_slot, checkpoint_slot = st.empty(), st.empty()
    page.run()
    # Filled after the page ran. The device needs torch, which Home, showing its stored
    # pictures, never imports: there the line is left out and torch is imported in the
    # background, so that the next page opens without waiting for it.
    if "torch" in sys.modules:
        device_slot.caption(f"**Device:** {device_label()}")
    else:
        warm_up()
    active = active_checkpoint()
    checkpoint_slot.caption(
        f"**Active checkpoint:** {active}" if active else "No checkpoint chosen"
    )


if __name__ == "__main__":
    run()
