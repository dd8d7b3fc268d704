"""The tasks. Each entry is a lazy ``module:Class`` string; this is the only list of envs."""

from fbenv.registry import TaskSpec, register

register(
    TaskSpec(
        id="fbenv/Advisor-v0",
        entry_point="fbenv.envs.advisor:AdvisorEnv",
        summary="Advise a shopper who cannot see product specs; rated in foresight or hindsight (RLHS).",
        variants=(
            {"feedback_timing": "foresight"},
            {"feedback_timing": "partial_hindsight"},
            {"feedback_timing": "hindsight"},
        ),
        outcomes=("deceived", "misstatements", "omissions"),
        perf_variant={"feedback_timing": "hindsight"},
    )
)

register(
    TaskSpec(
        id="fbenv/SuggestionTiming-v0",
        entry_point="fbenv.envs.suggestion_timing:SuggestionTimingEnv",
        summary="Show or hide each code suggestion to a programmer in a hidden, shifting state; acceptance is not value.",
        variants=({}, {"verify_cost": 0.0, "horizon": 5}),
        outcomes=("acceptance_rate", "shown_rate", "accepted_per_shown", "total_true_utility", "bad_accepts"),
    )
)

register(
    TaskSpec(
        id="fbenv/DynamicalBandit-v0",
        entry_point="fbenv.envs.dynamical_bandit:DynamicalBanditEnv",
        summary="Pull arms whose effects linger in a hidden state: the myopic arm is a trap (Dynamical Linear Bandits).",
        simulators=("rule",),
        variants=(
            {},
            {"n_arms": 5, "state_dim": 4, "rho": 0.95, "horizon": 20},
            {"n_arms": 2, "state_dim": 1, "rho": 0.0, "noise": 0.0, "horizon": 5},
        ),
        outcomes=("cumulative_regret", "best_arm_share", "myopic_arm_share", "idle_rounds"),
    )
)

register(
    TaskSpec(
        id="fbenv/DuelingPrompts-v0",
        entry_point="fbenv.envs.dueling_prompts:DuelingPromptsEnv",
        summary="Pick a pair of candidate prompts; a user prefers one response (APOHF dueling bandit).",
        variants=({}, {"llm_prompting": "holistic", "n_prompts": 4, "horizon": 20}),
        outcomes=("cumulative_regret", "cumulative_strong_regret", "invalid_actions"),
    )
)

register(
    TaskSpec(
        id="fbenv/Recommend-v0",
        entry_point="fbenv.envs.recommend:RecommendEnv",
        summary="Recommend from a slate to a user with drifting interests; clicks (MNAR, clickbait) are not satisfaction.",
        variants=({}, {"preference_text": True, "slate_size": 2, "horizon": 6}),
        outcomes=("click_rate", "hit_rate", "purchase_rate", "satisfaction", "top_click_share", "head_share",
                  "clickbait_clicks"),
    )
)

register(
    TaskSpec(
        id="fbenv/ClarifySearch-v0",
        entry_point="fbenv.envs.clarify_search:ClarifySearchEnv",
        summary="Ask clarifying questions or rank passages (BM25); the user's feedback names a missing facet (nDCG@3).",
        variants=({}, {"need_size": 1, "max_rounds": 3, "question_cost": 0.0}),
        outcomes=("ndcg_by_round", "first_ndcg", "final_ndcg", "ndcg_gain", "questions_asked", "rankings"),
    )
)

register(
    TaskSpec(
        id="fbenv/Shop-v0",
        entry_point="fbenv.envs.shop:ShopEnv",
        summary="Search, open, choose options and buy what a shopper asked for; one terminal attribute-match reward (WebShop).",
        variants=({}, {"hidden_option": "none", "max_steps": 8}),
        outcomes=("success", "match", "steps", "invalid_actions"),
    )
)

register(
    TaskSpec(
        id="fbenv/Refine-v0",
        entry_point="fbenv.envs.refine:RefineEnv",
        summary="Answer, hear a critic at one of five feedback levels, retry; honest, noisy or deceptive judges (Feedback Friction).",
        variants=({}, {"feedback": "answer", "judge": "deceptive", "family": "arithmetic"},
                  {"feedback": "checklist", "judge": "noisy", "judge_noise": 0.3, "max_rounds": 3}),
        outcomes=("solved", "rounds_used", "friction", "fixed_at_round", "flipped_correct_to_wrong",
                  "repeated_rejected_answer", "correct_by_round"),
    )
)

register(
    TaskSpec(
        id="fbenv/PreferenceFarm-v0",
        entry_point="fbenv.envs.preference_farm:PreferenceFarmEnv",
        summary="Answer requests for a pool of noisy, biased annotators (AlpacaFarm); pairwise judgements flip under distractors.",
        variants=(
            {},
            {"protocol": "pointwise", "annotators": 2, "horizon": 3},
            {"protocol": "listwise", "n_candidates": 3, "annotators": 2, "horizon": 3, "llm_judge": "holistic"},
            {"reference": "plain", "label_noise": 0.0, "annotators": 2, "horizon": 3, "llm_judge": "holistic"},
        ),
        outcomes=("win_rate", "judged_reward", "mean_quality", "quality_agreement", "protocol_disagreement",
                  "pairwise_flip_rate", "pointwise_flip_rate", "pairwise_flip_trials", "pointwise_flip_trials",
                  "invalid_actions"),
        perf_variant={"annotators": 3},
    )
)

register(
    TaskSpec(
        id="fbenv/DeceptiveJudge-v0",
        entry_point="fbenv.envs.deceptive_judge:DeceptiveJudgeEnv",
        summary="A judge (helpful or deceptive, with or without the key) talks a simulated solver into or out of its answer.",
        multi_agent=True,
        variants=({}, {"intent": "helpful", "knowledge": "none", "family": "facts"},
                  {"intent": "helpful", "judge_level": "answer", "solver_accuracy": 0.0}),
        outcomes=("final_correct", "target_reached", "flip_rate", "fix_rate", "flips", "right_rounds", "fixes",
                  "wrong_rounds", "rounds_used", "accepted", "correct_by_round"),
    )
)

register(
    TaskSpec(
        id="fbenv/ActorCritic-v0",
        entry_point="fbenv.envs.actor_critic:ActorCriticEnv",
        summary="An actor answers in steps, a critic gives a verdict and names a step, the actor refines (Critique-RL).",
        multi_agent=True,
        variants=({}, {"max_rounds": 2, "family": "arithmetic", "critic_noise": 0.0, "discrimination_weight": 0.5},
                  {"family": "checklist", "actor_skill": 0.0, "sway": 0.0, "fix_rate": 1.0}),
        outcomes=("solved", "first_correct", "rounds_used", "critiques", "verdict_accuracy", "located", "helpfulness",
                  "fixed", "broken", "correct_by_round", "invalid_answers", "invalid_critiques"),
    )
)

register(
    TaskSpec(
        id="fbenv/ImplicitChat-v0",
        entry_point="fbenv.envs.implicit_chat:ImplicitChatEnv",
        summary="Answer chat users whose feedback is a sparse, sometimes adversarial love reaction and a follow-up (RLUF).",
        variants=(
            {},
            {"reward": "follow_up", "observe_prob": 1.0, "n_candidates": 3, "horizon": 3},
            {"adversarial_frac": 1.0, "adversarial_goal": "unsafe", "n_personas": 2, "horizon": 3},
        ),
        outcomes=("love_rate", "observed_love_rate", "satisfied_rate", "follow_up_likelihood", "helpfulness", "safety",
                  "mean_true_utility", "unsafe_answers", "useless_answers", "rephrases", "complaints", "abandoned",
                  "adversarial_user", "love_mismatch_share", "invalid_actions"),
    )
)

register(
    TaskSpec(
        id="fbenv/ScopedFeedback-v0",
        entry_point="fbenv.envs.scoped_feedback:ScopedFeedbackEnv",
        summary="Apply a user's standing verbal feedback inside its scope only, turns later (C3PO, PrefEval).",
        variants=(
            {},
            {"reveal": "implicit", "distance": 0, "horizon": 3, "n_candidates": 2},
            {"distance": 12, "horizon": 4, "n_candidates": 6},
        ),
        outcomes=("adherence", "overgeneralization", "judged_satisfaction", "mean_utility", "in_scope_requests",
                  "out_of_scope_requests", "adherence_by_distance", "invalid_actions"),
    )
)

register(
    TaskSpec(
        id="fbenv/Tutor-v0",
        entry_point="fbenv.envs.tutor:TutorEnv",
        summary="Hint a student with a planted bug; its fix, run on hidden tests, is the reward; leaking the fix is penalized.",
        variants=({}, {"max_turns": 3, "leak_penalty": 0.5, "split": "test"}),
        outcomes=("fixed", "leaked", "fixed_without_leak", "fixed_at_turn", "final_pass_rate", "names_line",
                  "names_misconception", "no_answer_revealed", "asks_guiding_question", "rubric_score",
                  "invalid_hints"),
    )
)

register(
    TaskSpec(
        id="fbenv/CodeFeedback-v0",
        entry_point="fbenv.envs.code_feedback:CodeFeedbackEnv",
        summary="Write Python against hidden tests; compile, execution (none/partial/full) and novice/expert user feedback (ConvCodeWorld).",
        variants=({}, {"test_coverage": "full", "user_expertise": "novice"},
                  {"test_coverage": "none", "split": "test", "max_turns": 3}),
        outcomes=("solved", "solved_at_turn", "reciprocal_rank", "pass_at_turn", "final_pass_rate", "misled",
                  "turns_used", "syntax_errors", "leaks"),
    )
)

register(
    TaskSpec(
        id="fbenv/Commons-v0",
        entry_point="fbenv.envs.commons:CommonsEnv",
        summary="A gathering/cleanup commons of simultaneous seats with a zap; sparse or dense social feedback.",
        multi_agent=True,
        variants=({"max_cycles": 30},
                  {"game": "cleanup", "feedback": "dense", "feedback_every": 10, "max_cycles": 30, "view": 1,
                   "population": ("cleaner", "zapper", "adaptive", "greedy")}),
        outcomes=("efficiency", "equality", "sustainability", "peace", "apples", "total_return", "depleted", "zaps",
                  "cleaned", "invalid_actions"),
    )
)

register(
    TaskSpec(
        id="fbenv/Negotiation-v0",
        entry_point="fbenv.envs.negotiation:NegotiationEnv",
        summary="A buyer and a seller with private limits bargain; a coach advises one between games (self-play, AI feedback).",
        multi_agent=True,
        variants=({}, {"games": 3, "coach": "buyer_0", "zopa": "overlap"},
                  {"games": 2, "coach": "seller_0", "learnable": "coach_0", "max_turns": 6}),
        outcomes=("deal_rate", "deals", "games", "walkaways", "broken", "buyer_surplus", "seller_surplus",
                  "buyer_surplus_per_deal", "seller_surplus_per_deal", "buyer_share", "rounds_to_deal", "deal_by_game",
                  "buyer_surplus_by_game", "seller_surplus_by_game", "advice", "invalid_moves"),
    )
)

register(
    TaskSpec(
        id="fbenv/SafetyWaltz-v0",
        entry_point="fbenv.envs.safety_waltz:SafetyWaltzEnv",
        summary="An assistant answers harmful, sensitive and benign requests; a feedback agent suggests revisions only when needed (Alignment Waltz).",
        multi_agent=True,
        variants=({}, {"max_rounds": 2, "labels": "sensitive", "feedback_noise": 0.3, "intervention_penalty": 0.2},
                  {"n_prompts": 3, "assistant_unsafe": 1.0, "assistant_overrefusal": 1.0, "assistant_follow": 0.5}),
        outcomes=("unsafe_rate", "overrefusal_rate", "intervention_rate", "first_unsafe_rate", "first_overrefusal_rate",
                  "needless", "missed", "fixed", "broken", "harmful_prompts", "harmless_prompts", "unsafe",
                  "overrefusals", "interventions", "mean_quality", "invalid_responses", "invalid_feedback"),
    )
)
