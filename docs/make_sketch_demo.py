"""GIF of sketch mode in the real player, rendered off screen (SDL's dummy video driver).

    python docs/make_sketch_demo.py  -> docs/sketch_mode.gif

The player runs exactly as `genie-play` does on the bundled world: E opens sketch mode, C blanks
the canvas, rectangles (a ground and two platforms) and a brush stroke are drawn with posted mouse
events in the world's palette, Enter plays the drawing, then Right and Up step the world. The
window's surface is saved after each event. No X server needed (none was available to record it).
"""
import os
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
import time
import numpy as np
import pygame
from genie_play.player.app import App, PlayOptions
from genie_play.paths import bundled_prompts
from genie_play.gif import write_gif

frames, times = [], []

def grab(app):
    app.tick()
    surf = pygame.display.get_surface()
    frames.append(pygame.surfarray.array3d(surf).transpose(1, 0, 2).copy())
    times.append(time.monotonic())

def post(kind, **a):
    pygame.event.post(pygame.event.Event(kind, **a))

def key(k, mod=0):
    post(pygame.KEYDOWN, key=k, mod=mod, unicode="")
    post(pygame.KEYUP, key=k, mod=mod)

def load():
    from genie_play.devices import set_threads
    from genie_play.world import World
    set_threads()
    return World.load("coinrun")

prompt = [p for p in bundled_prompts() if "sketch" in p.name] or bundled_prompts()
app = App(load, prompt, PlayOptions(world_name="coinrun", seed=3, scale=4, record_dir="/tmp/demo_out")).start()
pygame.display.set_mode((64 * 4 + 350, 64 * 4 + 150), pygame.RESIZABLE)
while not app.settled():
    app.tick()
for _ in range(3):
    grab(app)
key(pygame.K_e)
for _ in range(3):
    grab(app)
view = app.sketch
pal = view.palette
def pick(i):
    view.colour = pal[i % len(pal)]
def drag(points, settle=1):
    post(pygame.MOUSEBUTTONDOWN, pos=view.screen_pos(*points[0]), button=1)
    grab(app)
    for p in points[1:]:
        post(pygame.MOUSEMOTION, pos=view.screen_pos(*p), rel=(0, 0), buttons=(1, 0, 0))
        grab(app)
    post(pygame.MOUSEBUTTONUP, pos=view.screen_pos(*points[-1]), button=1)
    for _ in range(settle):
        grab(app)
key(pygame.K_c)
grab(app); grab(app)
key(pygame.K_r)
far = sorted(range(len(pal) - 2), key=lambda i: -sum((a - b) ** 2 for a, b in zip(pal[i], pal[0])))
pick(far[0])
drag([(0, 52), (20, 58), (63, 63)], 2)
drag([(22, 38), (30, 40), (40, 42)], 2)
drag([(46, 26), (52, 28), (60, 30)], 2)
key(pygame.K_b); key(pygame.K_3)
pick(far[1])
drag([(8, 46), (8, 48), (9, 50)], 2)
for _ in range(4):
    grab(app)
key(pygame.K_RETURN)
while not (app.sketch is None and app.settled()):
    grab(app)
for _ in range(3):
    grab(app)
for k in [pygame.K_RIGHT] * 4 + [pygame.K_UP] * 2 + [pygame.K_RIGHT] * 3:
    key(k)
    target = app.state.step + 1
    while not (app.settled() and app.state.step >= target):
        app.tick()
    grab(app)
    grab(app)
app.close()
arr = np.stack(frames)[:, :, :, :]
# real timing, but drawing steps shown at 120 ms and play frames at 250 ms for a readable GIF
durations = [120] * len(arr)
write_gif("docs/sketch_mode.gif", arr, durations_ms=durations, scale=1)
print(len(arr), arr.shape)
