"""EasyClaw's AI-agent application, built on the queue engine in ``easyclaw.core``.

The job types users submit (CHAT, RESEARCH, ECHO), the language-model
providers they call, usage billing, conversations and per-user state. The
engine never imports this package; the processes (API, worker, operator)
do, which keeps the direction processes -> agents -> core.
"""
