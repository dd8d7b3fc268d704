"""The benchmark suites, by name, as lazy ``"module:function"`` strings (the core imports none).

Each function takes ``(episodes, llm, skip_llm, out, echo)``, prints its tables through
``echo`` and saves its rows; ``fbenv bench [SUITE]`` dispatches here.
"""

SUITES: dict[str, str] = {
    "rlhs": "fbenv.baselines.rlhs:bench",  # Advisor: feedback reward vs true utility per feedback timing
    "fidelity": "fbenv.baselines.fidelity:bench",  # every task: rule vs LLM simulator on the same episodes
    "suggestion": "fbenv.baselines.suggestion:bench",  # SuggestionTiming: acceptance vs true utility per display policy
    "dueling": "fbenv.baselines.dueling:bench",  # DuelingPrompts (APOHF): Double Thompson Sampling vs random pairs, regret
    "dynamical": "fbenv.baselines.dynamical:bench",  # DynamicalBandit: DynLin-UCB vs myopic LinUCB vs random, cumulative regret
    "clarify": "fbenv.baselines.clarify:bench",  # ClarifySearch: nDCG@3 by round, feedback-user vs ignorer vs asker
    "recommend": "fbenv.baselines.recommend:bench",  # Recommend: click rate vs satisfaction, random / LinUCB / click- vs satisfaction-greedy
    "shop": "fbenv.baselines.shop:bench",  # Shop (WebShop-like): scripted assistants, MaskablePPO with vs without stepwise progress (SPA)
    "refine": "fbenv.baselines.refine:bench",  # Refine (Feedback Friction): solve rate by round and friction per feedback level, honest vs deceptive judge
    "preference": "fbenv.baselines.preference:bench",  # PreferenceFarm (AlpacaFarm): judged reward vs hidden quality, flip rates per protocol
    "deceptive_judge": "fbenv.baselines.deceptive_judge:bench",  # DeceptiveJudge (WAFER-QA game): flip and fix rates per round per scripted judge
    "actor_critic": "fbenv.baselines.actor_critic:bench",  # ActorCritic (Critique-RL): verdict accuracy and helpfulness of scripted critics vs the rule actor
    "scoped": "fbenv.baselines.scoped_feedback:bench",  # ScopedFeedback (C3PO, PrefEval): adherence vs overgeneralization per policy, adherence by distance
    "code": "fbenv.baselines.code_feedback:bench",  # CodeFeedback (ConvCodeWorld): pass@turn and MRR per feedback combination, live vs static
    "tutor": "fbenv.baselines.tutor:bench",  # Tutor (tutor-style hints, TutorBench): fix rate, leak rate and rubric per hint policy
    "implicit": "fbenv.baselines.implicit_chat:bench",  # ImplicitChat (RLUF): love reactions vs helpfulness; a love-trained LinUCB raises love, not help
    "commons": "fbenv.baselines.commons:bench",  # Commons (social dilemmas): rule populations, sparse vs dense policy revision, a PPO seat
    "waltz": "fbenv.baselines.safety_waltz:bench",  # SafetyWaltz (Alignment Waltz): unsafe/overrefusal per feedback agent, DIR-trained PPO feedback seat
    "negotiation": "fbenv.baselines.negotiation:bench",  # Negotiation (self-play, AI feedback): coached buyer bargains harder, breaks more deals; PPO buyer
}
