"""The seed's example (SEED.md, "快速开始"), sections 1 to 5 in its order, its
code as written there with only the import lines changed from `metrics` to
`runmetrics`. What the seed elides ("# ... 推理或业务逻辑 ...") is marked
below: `do_grounding` sleeps 20 ms, `infer_step` is called three times, and
`end_run` (section 2) comes last. Writes metrics_logs/<run_id>.json in the
current directory and prints its path.

    python python/examples/seed_example.py
"""

import time


def do_grounding():
    time.sleep(0.02)


# 1. 初始化
from runmetrics import init_metrics
init_metrics(port=14233, job="al_inference", grouping={"env": "dev"})

# 2. 开始与结束一次运行
from runmetrics import start_run, end_run

run_id = start_run(log_dir="metrics_logs")
# ... 推理或业务逻辑 ...

# 3. 代码级计时（阶段）
from runmetrics import PhaseTimer

with PhaseTimer("grounding", module="pipeline"):
    do_grounding()

# 4. 函数级计时
from runmetrics import measure

@measure("infer_step", module="inference")
def infer_step():
    # 推理步骤逻辑
    pass

# (the business logic the seed elides)
for _ in range(3):
    infer_step()

# 5. 采集计数与进程状态
from runmetrics import observe_counts, sample_process_gauges

observe_counts(grounded_rules=10, facts_count=200)
sample_process_gauges()

# (section 2's end of the run)
path = end_run(extra_meta={"facts_final": 100, "rules_total": 50})
print(f"run {run_id}: {path}")
