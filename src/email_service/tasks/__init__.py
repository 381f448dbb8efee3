"""email_service.tasks"""
