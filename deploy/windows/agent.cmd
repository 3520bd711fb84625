@echo off
rem The agent's command line with the service's config, token and agent.env:
rem   agent.cmd check      config, proxy (through HTTPS_PROXY) and every resource
rem   agent.cmd version
rem Variables already set in this console win over agent.env.
setlocal
set "DATA=%ProgramData%\Outpost"
if not defined AGENT_CONFIG set "AGENT_CONFIG=%DATA%\agent.json"
if not defined AGENT_TOKEN if not defined AGENT_TOKEN_FILE set "AGENT_TOKEN_FILE=%DATA%\agent-token"
if exist "%DATA%\agent.env" for /f "usebackq eol=# tokens=1,* delims==" %%A in ("%DATA%\agent.env") do if not defined %%A set "%%A=%%B"
"%~dp0node.exe" "%~dp0agent.mjs" %*
exit /b %errorlevel%
