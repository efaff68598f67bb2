"""The Gradio app (Chat, Search, People, Library), mounted with the REST API in one FastAPI server.

The app calls the same tools as the API, in-process; the browser fetches large views and video originals
from the API by media id (`api/media/{id}/...`), so a video plays from its matched keyframe with a plain
`<video src="...#t=SECONDS">`. One login covers both: the app's login cookie is accepted by the API.
A gr.Gallery inside the chatbot does not report which picture was clicked, only the message, so a few
lines of page script remember the clicked thumbnail's position and hand it to the chatbot's select event.
"""

from __future__ import annotations

import html
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a private app phones nowhere

import gradio as gr
from fastapi import FastAPI, Request

from assistant.api import (active_media, agent_for, create_api, face_crop, library_state, nearest_frame_index,
                           people_on, preview_path, sample_faces, start_ingest_job)
from catalog.settings import Library

EXAMPLES = ["photos of a cat", "show me videos from 2019", "how many photos do I have from 2020?",
            "who appears most often?"]
MAX_SHOWN = 24  # thumbnails per gallery

HEAD = """<meta name="viewport" content="width=device-width, initial-scale=1">
<script>
document.addEventListener('click', (event) => {
  const item = event.target.closest && event.target.closest('#pe-chat button.thumbnail-item');
  if (!item) return;
  const all = Array.from(item.closest('.grid-container').querySelectorAll('button.thumbnail-item'));
  window.pePick = String(all.indexOf(item));
}, true);
</script>"""

CSS = """
#pe-chat { min-height: 320px; }
#pe-chat .message.component, #pe-chat .bot-row .role { width: 100%; max-width: 100%; }
.pe-grid .grid-wrap { min-height: 0 !important; height: auto !important; max-height: 75vh !important; }
.pe-grid .grid-container { grid-template-columns: repeat(auto-fill, minmax(110px, 1fr)) !important; }
.pe-grid .thumbnail-item { width: 100% !important; height: auto !important; aspect-ratio: 1 / 1; }
.pe-grid .thumbnail-item img { width: 100% !important; height: 100% !important; margin: 0 !important; object-fit: cover; }
#pe-chat .grid-wrap { min-height: 0 !important; height: auto !important; max-height: none !important; overflow: visible !important; }
#pe-chat .grid-container { grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)) !important; width: 100%; }
#pe-chat .thumbnail-item { width: 100% !important; height: auto !important; aspect-ratio: 1 / 1; }
#pe-chat .thumbnail-item img { width: 100% !important; height: 100% !important; margin: 0 !important; object-fit: cover; }
.pe-hidden { display: none !important; }
.pe-detail { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.pe-detail .pe-view { flex: 0 1 640px; max-width: 100%; }
.pe-detail img, .pe-detail video { max-width: 100%; max-height: 70vh; border-radius: 8px; background: #000; }
.pe-detail dl { flex: 1 1 220px; display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0; }
.pe-detail dt { font-weight: 600; opacity: .75; }
.pe-detail dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 640px) { .gradio-container { padding: 4px !important; } }
"""


# --- what the galleries and the large view show --------------------------------------------------------------

def _clock(seconds: float | None) -> str:
    seconds = max(0.0, float(seconds or 0.0))
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _day(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y")
    except ValueError:
        return value[:10]


def caption(item: dict[str, Any]) -> str:
    """A gallery caption: file name, then the matched moment of a video and the date."""
    parts = [Path(item.get("path") or "").name]
    if item.get("kind") == "video":
        parts.append(f"▶ {_clock(item.get('frame_time'))}")
    if item.get("taken_at"):
        parts.append(_day(item["taken_at"]))
    return " · ".join(p for p in parts if p)


def gallery_items(library: Library, results: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[dict]]:
    """(image, caption) pairs for the results that have a preview, and those results in the same order.

    A video shows the keyframe nearest its matched moment."""
    shown: list[dict[str, Any]] = []
    images: list[tuple[str, str]] = []
    for item in results:
        if len(shown) >= MAX_SHOWN:
            break
        try:
            media = active_media(library, int(item["media_id"]))
        except Exception:  # noqa: BLE001 - gone since the search: nothing to show
            continue
        index = nearest_frame_index(library, media.id or 0, item.get("frame_time")) if media.kind == "video" else None
        path = preview_path(library, media, "small", frame_index=index)
        if path is None:
            continue
        images.append((str(path), caption({**item, "path": media.path, "kind": media.kind,
                                           "taken_at": item.get("taken_at") or (media.taken_at.isoformat()
                                                                               if media.taken_at else None)})))
        shown.append(item)
    return images, shown


def detail_html(library: Library, media_id: int, frame_time: float | None = None) -> str:
    """The large view: the photo, or the video playing from the matched moment, with what the catalog knows."""
    from tools.library import media_info

    info = media_info(library, int(media_id))
    if info is None or info.get("status") == "deleted":
        return "<p>This file is no longer in the library.</p>"
    esc = html.escape
    name = esc(Path(info["path"]).name)
    base = f"api/media/{int(media_id)}"
    if info["kind"] == "video":
        at = float(frame_time or 0.0)
        index = nearest_frame_index(library, int(media_id), at)
        poster = f' poster="{base}/frames/{index}?size=large"' if index is not None else ""
        view = (f'<video controls playsinline preload="metadata" src="{base}/original#t={at:.2f}"{poster}>'
                f"</video>")
    else:
        view = f'<a href="{base}/original" target="_blank"><img src="{base}/thumbnail?size=large" alt="{name}"></a>'
    people = ", ".join(p["name"] or f"Person {p['person_id']}" for p in people_on(library, int(media_id)))
    tags = list(dict.fromkeys(t["label"] for t in info.get("tags", [])))[:8]
    captions = list(dict.fromkeys(c["text"] for c in info.get("captions", [])))[:2]
    facts = [("Date", _when(info.get("taken_at"))), ("Place", info.get("place")), ("People", people),
             ("Caption", " / ".join(captions)), ("Tags", ", ".join(tags)), ("Camera", info.get("camera")),
             ("Moment", f"{_clock(frame_time)} of {_clock(info.get('duration'))}" if info["kind"] == "video" else ""),
             ("File", Path(info["path"]).name)]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in facts if v)
    return f'<div class="pe-detail" data-media-id="{int(media_id)}"><div class="pe-view">{view}</div><dl>{rows}</dl></div>'


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y, %H:%M")
    except ValueError:
        return value


# --- tabs ---------------------------------------------------------------------------------------------------

def _chat_tab(api: FastAPI) -> None:
    library: Library = api.state.library
    chat = gr.Chatbot(elem_id="pe-chat", label="Assistant", height="60vh", feedback_options=None,
                      placeholder="Ask about your photos and videos, e.g. *photos of a cat*.")
    with gr.Row(equal_height=True):
        question = gr.Textbox(elem_id="pe-question", show_label=False, scale=5, min_width=200, max_lines=3,
                              placeholder="show beach videos from 2019", submit_btn=False)
        send = gr.Button("Ask", elem_id="pe-ask", variant="primary", scale=1, min_width=70)
    gr.Examples(EXAMPLES, inputs=question, label="Try")
    detail = gr.HTML(elem_id="pe-detail", js_on_load=None)
    pick = gr.Textbox(elem_id="pe-pick", elem_classes="pe-hidden", show_label=False, container=False)
    picks = gr.State({})

    def respond(text: str, history: list, shown: dict) -> Iterator[tuple]:
        text = (text or "").strip()
        if not text:
            return
        history = list(history or []) + [{"role": "user", "content": text}]
        work = {"role": "assistant", "content": "", "metadata": {"title": "Looking in your library", "status": "pending"}}
        answer = {"role": "assistant", "content": ""}
        history += [work, answer]
        shown = dict(shown or {})
        yield "", history, shown
        try:
            for event in agent_for(api).stream(text):
                kind = event["type"]
                if kind == "tool":
                    args = ", ".join(f"{k}={v!r}" for k, v in event["args"].items())
                    work["content"] += f"{event['name']}({args}){'' if event['ok'] else ' — failed'}\n\n"
                elif kind == "media" and event["media"]:
                    images, items = gallery_items(library, event["media"])
                    if images:
                        shown[str(len(history))] = items
                        history.append({"role": "assistant", "content": gr.Gallery(
                            value=images, columns=3, height="auto", object_fit="cover", show_label=False,
                            allow_preview=False, elem_classes="pe-chat-gallery")})
                elif kind == "token":
                    answer["content"] += event["text"]
                elif kind == "replace":
                    answer["content"] = event["text"]
                elif kind == "final":
                    answer["content"] = event["result"]["answer"]
                else:
                    continue
                yield "", history, shown
        except Exception as error:  # noqa: BLE001 - the conversation survives a failing tool or model
            answer["content"] = f"Sorry, that failed: {type(error).__name__}: {error}"
        work["metadata"] = {"title": "Looked in your library", "status": "done"}
        yield "", history, shown

    def open_pick(position: str, shown: dict, evt: gr.SelectData) -> Any:
        items = (shown or {}).get(str(evt.index))
        if not items:
            return gr.skip()
        index = int(position) if str(position or "").isdigit() else 0
        item = items[min(index, len(items) - 1)]
        return detail_html(library, item["media_id"], item.get("frame_time"))

    send.click(respond, [question, chat, picks], [question, chat, picks])
    question.submit(respond, [question, chat, picks], [question, chat, picks])
    chat.select(open_pick, [pick, picks], detail, js="(position, shown) => [window.pePick || '0', shown]") \
        .then(None, js="() => document.getElementById('pe-detail')?.scrollIntoView({behavior: 'smooth'})")


def _search_tab(api: FastAPI) -> None:
    library: Library = api.state.library
    with gr.Row():
        text = gr.Textbox(label="Search", elem_id="pe-search-text", placeholder="a cat, beach, birthday cake…",
                          scale=3, min_width=220)
        image = gr.Image(label="…or photos like this one", type="filepath", sources=["upload", "clipboard"],
                         height=140, scale=1, min_width=160, elem_id="pe-search-image")
    with gr.Accordion("Filters", open=False):
        with gr.Row():
            kind = gr.Radio(["any", "photo", "video"], value="any", label="Type", min_width=200)
            sort = gr.Radio(["relevance", "newest", "oldest"], value="relevance", label="Order", min_width=200)
        with gr.Row():
            date_from = gr.Textbox(label="From", placeholder="2019 or 2019-06-01", min_width=140)
            date_to = gr.Textbox(label="To", placeholder="2020-12-31", min_width=140)
        with gr.Row():
            person = gr.Dropdown(label="Person", choices=[], allow_custom_value=True, min_width=160)
            place = gr.Textbox(label="Place", placeholder="city, region or country", min_width=160)
    go = gr.Button("Search", variant="primary", elem_id="pe-search-go")
    note = gr.Markdown(elem_id="pe-search-note")
    grid = gr.Gallery(label="Results", elem_id="pe-search-grid", columns=4, height="auto", object_fit="cover",
                      allow_preview=False, elem_classes="pe-grid")
    detail = gr.HTML(elem_id="pe-search-detail", js_on_load=None)
    shown = gr.State([])

    def run(text: str, image: str | None, kind: str, sort: str, date_from: str, date_to: str, person: str | None,
            place: str) -> tuple:
        from pydantic import ValidationError

        from tools.search import search

        args: dict[str, Any] = {"text": text or None, "image": image or None, "kind": None if kind == "any" else kind,
                                "sort": sort, "person": person or None, "place": (place or "").strip() or None,
                                "limit": MAX_SHOWN}
        for key, value in (("date_from", date_from), ("date_to", date_to)):
            value = (value or "").strip()
            if value.isdigit() and len(value) == 4:  # a year: its first or last day
                value = f"{value}-01-01" if key == "date_from" else f"{value}-12-31"
            args[key] = value or None
        try:
            outcome = search(library, **args)
        except (ValidationError, ValueError, LookupError) as error:
            return [], f"⚠ {_reason(error)}", [], ""
        images, items = gallery_items(library, outcome.results)
        lines = [f"**{len(items)}** result{'s' if len(items) != 1 else ''}" if items else "Nothing matched."]
        lines += [f"⚠ {w}" for w in outcome.warnings]
        return images, "  \n".join(lines), items, ""

    def open_result(items: list, evt: gr.SelectData) -> Any:
        if not items or evt.index is None or evt.index >= len(items):
            return gr.skip()
        item = items[evt.index]
        return detail_html(library, item["media_id"], item.get("frame_time"))

    inputs = [text, image, kind, sort, date_from, date_to, person, place]
    go.click(run, inputs, [grid, note, shown, detail])
    text.submit(run, inputs, [grid, note, shown, detail])
    grid.select(open_result, shown, detail).then(
        None, js="() => document.getElementById('pe-search-detail')?.scrollIntoView({behavior: 'smooth'})")
    return person  # filled with people's names when the page loads


def _reason(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors()[:3])
    return str(error.args[0]) if error.args else str(error)


def _person_label(person: dict[str, Any]) -> str:
    return person.get("name") or f"Person {person['person_id']}"


def _people_tab(api: FastAPI) -> tuple[Any, Any]:
    library: Library = api.state.library
    note = gr.Markdown("Faces found in your photos and videos, grouped by person. Pick one to name or merge it.")
    faces = gr.Gallery(label="People", elem_id="pe-people", columns=4, height="auto", object_fit="cover",
                       allow_preview=False, elem_classes="pe-grid")
    people = gr.State([])
    chosen = gr.State(None)
    with gr.Column(visible=False) as panel:
        title = gr.Markdown()
        samples = gr.Gallery(label="Sample faces", columns=6, height="auto", allow_preview=False, elem_classes="pe-grid")
        with gr.Row():
            name = gr.Textbox(label="Name", placeholder="e.g. Grandma", min_width=180, scale=3)
            save = gr.Button("Save name", variant="primary", min_width=100, scale=1)
        with gr.Row():
            other = gr.Dropdown(label="Merge another person into this one", choices=[], min_width=180, scale=3)
            merge = gr.Button("Merge", min_width=100, scale=1)
        files = gr.Gallery(label="Appears in", columns=4, height="auto", allow_preview=True, elem_classes="pe-grid")
    status = gr.Markdown()
    refresh = gr.Button("Refresh", size="sm")

    def load() -> tuple:
        from tools.people_tools import list_people

        rows = list_people(library)
        images, kept = [], []
        for person in rows:
            face_ids = sample_faces(library, person["person_id"], limit=1)
            crop = face_crop(library, face_ids[0]) if face_ids else None
            if crop is None:
                continue
            images.append((crop, f"{_person_label(person)} · {len(person.get('media', []))} files"))
            kept.append({"person_id": person["person_id"], "name": person.get("name"), "files": len(person.get("media", []))})
        text = "No people yet: run an ingest with the faces analyzer." if not kept else \
            f"{len(kept)} people. Pick one to name or merge it."
        return images, kept, text

    def choose(kept: list, evt: gr.SelectData) -> tuple:
        if not kept or evt.index is None or evt.index >= len(kept):
            return (gr.skip(),) * 7
        person = kept[evt.index]
        return (person["person_id"], gr.Column(visible=True), f"### {html.escape(_person_label(person))}",
                [c for c in (face_crop(library, f) for f in sample_faces(library, person["person_id"], 8)) if c],
                person.get("name") or "",
                gr.Dropdown(choices=[(_person_label(p), p["person_id"]) for p in kept
                                     if p["person_id"] != person["person_id"]], value=None),
                _person_files(library, person["person_id"]))

    def rename(person_id: int | None, new_name: str) -> str:
        from tools.people_tools import name_person

        if person_id is None:
            return "Pick a person first."
        try:
            done = name_person(library, int(person_id), new_name or "")
        except (KeyError, ValueError) as error:
            return f"⚠ {_reason(error)}"
        return f"Saved: person {done['person_id']} is now **{html.escape(done['name'])}**."

    def merge_into(person_id: int | None, other_id: int | None) -> str:
        from tools.people_tools import merge_people

        if person_id is None or other_id is None:
            return "Pick a person, then the one to merge into it."
        try:
            done = merge_people(library, int(person_id), int(other_id))
        except LookupError as error:
            return f"⚠ {_reason(error)}"
        return f"Merged person {done['merged']} into {html.escape(done['name'] or str(done['person_id']))}."

    outputs = [faces, people, note]
    faces.select(choose, people, [chosen, panel, title, samples, name, other, files])
    refresh.click(load, None, outputs)
    save.click(rename, [chosen, name], status).then(load, None, outputs)
    merge.click(merge_into, [chosen, other], status).then(load, None, outputs).then(
        lambda: (None, gr.Column(visible=False)), None, [chosen, panel])
    return load, outputs


def _person_files(library: Library, person_id: int) -> list[tuple[str, str]]:
    from tools.search import search_media

    images, _ = gallery_items(library, search_media(library, person=str(person_id), limit=MAX_SHOWN))
    return images


def _library_tab(api: FastAPI) -> tuple[Any, list]:
    summary = gr.Markdown(elem_id="pe-library-summary")
    progress = gr.Markdown(elem_id="pe-ingest-progress")
    with gr.Row():
        rescan = gr.Button("Rescan all sources", variant="primary", elem_id="pe-rescan", min_width=160)
        folder = gr.Textbox(label="Add a folder (on this computer)", placeholder="/home/me/Pictures",
                            visible=bool(api.state.allow_new_sources), min_width=220, scale=2)
        add = gr.Button("Add and ingest", visible=bool(api.state.allow_new_sources), min_width=140)
    failed = gr.Markdown(elem_id="pe-failed")
    timer = gr.Timer(2.0)
    seen = gr.State(None)

    def refresh() -> tuple:
        data = library_state(api)
        return _summary(data), _progress(data["ingest"]), _failures(data["failed"])

    def start(path: str | None = None) -> str:
        from fastapi import HTTPException

        paths = [path.strip()] if path and path.strip() else []
        if paths and not Path(paths[0]).is_dir():
            return f"⚠ not a folder: {html.escape(paths[0])}"
        try:
            return _progress(start_ingest_job(api, paths))
        except HTTPException as error:
            return f"⚠ {html.escape(str(error.detail))}"

    def tick(last: Any) -> tuple:
        state = api.state.ingest.snapshot()
        marker = (state.get("runs"), state["running"])
        if not state["running"] and marker == last:
            return gr.skip(), gr.skip(), gr.skip(), last
        return (*refresh(), marker) if not state["running"] else (gr.skip(), _progress(state), gr.skip(), marker)

    rescan.click(start, None, progress, show_progress="hidden")
    add.click(start, folder, progress, show_progress="hidden")
    timer.tick(tick, seen, [summary, progress, failed, seen], show_progress="hidden")
    return refresh, [summary, progress, failed]


def _summary(data: dict[str, Any]) -> str:
    media, health = data["media"], data["health"]
    sources = "\n".join(f"- {_md(s)}" for s in data["sources"]) or "- none yet"
    return (f"### Library\n**{media['photo']}** photos · **{media['video']}** videos · {data['frames']} keyframes · "
            f"{data['faces']} faces · {data['people']} people · {data['pending']} waiting · "
            f"{len(data['failed'])} failed\n\n**Sources**\n{sources}\n\n"
            f"<small>catalog {health['catalog']} · vectors {html.escape(str(health.get('vectors')))}</small>")


def _md(text: Any) -> str:
    """Library text shown as plain text in Markdown: HTML escaped, Markdown punctuation backslashed."""
    return "".join("\\" + c if c in "\\`*_[]{}()#+-!|~>" else c for c in html.escape(str(text), quote=False))


def _failures(failed: list[dict[str, Any]], limit: int = 200) -> str:
    if not failed:
        return ""
    lines = [f"- **{_md(Path(f['path']).name)}** ({_md(f['stage'])}): {_md(f['error'])}"
             for f in failed[:limit]]
    more = f"\n\n…and {len(failed) - limit} more (`photo-engine status` lists them all)" if len(failed) > limit else ""
    return f"**Failed files** ({len(failed)})\n\n" + "\n".join(lines) + more


def _progress(state: dict[str, Any]) -> str:
    if not state.get("runs"):
        return "No ingest started from this server yet."
    counts = f"{state.get('done', 0)} files processed · {state.get('failed', 0)} failed"
    if state["running"]:
        remaining = state.get("remaining")
        return (f"**Ingest running**, stage {state.get('stage', 1)}: {state.get('stage_done', 0)} done"
                f"{f' · {remaining} to go' if remaining is not None else ''} · "
                f"{state.get('files_per_second', 0.0):.1f} files/s · {state.get('failed', 0)} failed so far")
    finished = datetime.fromtimestamp(state["finished_at"]).strftime("%H:%M:%S") if state.get("finished_at") else "?"
    if state.get("error"):
        return f"⚠ Last ingest stopped at {finished}: {html.escape(state['error'])}"
    return f"Last ingest finished at {finished}: {counts}."


# --- the server ---------------------------------------------------------------------------------------------

def build_blocks(api: FastAPI) -> gr.Blocks:
    """The four tabs over the API app's library, ingest job and agent."""
    with gr.Blocks(title="Photo Engine", fill_width=True) as blocks:
        gr.Markdown("## Photo Engine", elem_id="pe-title")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                _chat_tab(api)
            with gr.Tab("Search", id="search"):
                person_box = _search_tab(api)
            with gr.Tab("People", id="people") as people_tab:
                load_people, people_outputs = _people_tab(api)
            with gr.Tab("Library", id="library") as library_tab:
                refresh_library, library_outputs = _library_tab(api)
        people_tab.select(load_people, None, people_outputs)
        library_tab.select(refresh_library, None, library_outputs)
        blocks.load(lambda: gr.Dropdown(choices=_named_people(api.state.library)), None, person_box)
    return blocks


def _named_people(library: Library) -> list[str]:
    from tools.people_tools import list_people

    return sorted({p["name"] for p in list_people(library) if p.get("name")})


def create_server(library: Library, token: str | None = None, basic_auth: tuple[str, str] | None = None,
                  allow_new_sources: bool = False, llm: Any = None) -> FastAPI:
    """API + app in one FastAPI app (serve it with uvicorn). With a token or a user and password, the app asks
    for a login (the token works as the password) and its login cookie also opens the API to the browser."""
    api = create_api(library, token=token, basic_auth=basic_auth, allow_new_sources=allow_new_sources, llm=llm)
    auth = api.state.auth
    blocks = build_blocks(api)
    gr.mount_gradio_app(api, blocks, path="/", auth=auth.password_ok if auth.required else None,
                        auth_message="Photo Engine: sign in with the user and password given to --auth "
                                     "(with --token: any user name, the token as password).",
                        allowed_paths=[str(library.derived_dir)], head=HEAD, css=CSS, footer_links=["settings"],
                        run_history=False)
    gradio_app = next(route.app for route in reversed(api.routes) if getattr(route, "path", None) in ("", "/"))

    def logged_in(request: Request) -> bool:
        cookie_id = getattr(gradio_app, "cookie_id", None)
        token = (request.cookies.get(f"access-token-{cookie_id}")
                 or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
        return bool(token) and token in getattr(gradio_app, "tokens", {})

    auth.hooks.append(logged_in)
    api.state.blocks = blocks
    return api
