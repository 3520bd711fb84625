@echo off
rem Upgrades the service to the program files in THIS folder (unpack the new ZIP beside the old one
rem and run upgrade.cmd from the new folder, as Administrator):
rem   1. stops the service: the agent drains (jobs finish within shutdownGraceMs or are released to
rem      other agents of the pool; none is lost),
rem   2. points the service at this folder's node.exe and agent.mjs (config, token, agent.env and logs
rem      under %ProgramData%\Outpost are kept),
rem   3. starts it.
rem The old folder is left as it was: to roll back, run upgrade.cmd from the old folder.
setlocal EnableExtensions
call "%~dp0common.cmd"
sc query "%SERVICE%" >nul 2>&1
if errorlevel 1 (
  echo upgrade: service %SERVICE% does not exist; use install.cmd 1>&2
  exit /b 1
)
"%APPDIR%\node.exe" "%APPDIR%\agent.mjs" version >nul 2>&1
if errorlevel 1 (
  echo upgrade: %APPDIR%\node.exe agent.mjs does not run; the service is left as it was 1>&2
  exit /b 1
)
call "%APPDIR%\stop-service.cmd"
if errorlevel 1 exit /b 1
call "%APPDIR%\configure.cmd"
if errorlevel 1 exit /b 1
net start "%SERVICE%" >nul 2>&1
if errorlevel 1 (
  echo upgrade: net start %SERVICE% failed; see %DATA%\logs\agent.log 1>&2
  exit /b 1
)
echo upgrade: %SERVICE% now runs from %APPDIR%
exit /b 0
